"""A Gradium client on its own aiohttp session, pointed at the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.upstream.gradium import GradiumClient
from tests.conftest import Emulator


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[GradiumClient]:
    session = aiohttp.ClientSession()
    c = GradiumClient(session, emulator.url)
    yield c
    await c.close_idle()
    await session.close()
