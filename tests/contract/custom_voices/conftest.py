"""Custom voices, voice design and pronunciation dictionaries through the official SDKs and voice agents.
The `gateway` fixture here is the translated (Gradium) path only, overriding the two-target one of
tests/contract/conftest.py.

The caller's own voices and pronunciation dictionaries are managed by the gateway over Gradium: those
routes are in the traffic router's "catalogue" class, which stays on the gateway whatever the split, so
under a 100 % legacy split their TTS (passed through to the vendor) cannot use them. These modules prove
the Gradium side; the passthrough behaviour of voice management is the traffic policy's to decide."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Emulator, Gateway, gateway_settings, start_gateway


@pytest.fixture
async def gateway(emulator: Emulator, tls_files: dict[str, Path]) -> AsyncIterator[Gateway]:
    async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw:
        yield gw
