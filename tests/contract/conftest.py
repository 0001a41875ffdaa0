"""Every contract test runs against both targets with nothing changed but the configuration:
`gradium` (the translated path) and `legacy` (weights `{gradium: 0}`: passthrough to the stand-in vendor,
itself a gateway with its own emulator). In the legacy run the fixture's `app` and `emulator` are the
stand-in's, so the tests' emulator assertions read the side that served the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Emulator, Gateway, gateway_settings, start_gateway
from tests.standin import front_settings, start_front, start_standin


@pytest.fixture(params=["gradium", "legacy"])
async def gateway(request: pytest.FixtureRequest, emulator: Emulator, tls_files: dict[str, Path],
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    if request.param == "gradium":
        async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw:
            yield gw
        return
    async with start_standin(tls_files, monkeypatch) as standin:
        settings = front_settings(standin, tls_files, traffic={"default": {"gradium": 0}})
        async with start_front(settings, standin) as gw:
            yield gw
