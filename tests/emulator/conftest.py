"""Fixtures: an emulator on 127.0.0.1 with an ephemeral port, and clients pointed at it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gradium import GradiumClient

from gateway.emulator import FAULTS, EmulatorSettings, Faults, create_emulator_app

API_KEY = "gsk_test"


@dataclass
class Emulator:
    server: TestServer
    app: web.Application
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def api(self) -> str:
        return f"{self.base}/api/"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/api"

    @property
    def faults(self) -> Faults:
        return self.app[FAULTS]

    def sdk(self, api_key: str = API_KEY) -> GradiumClient:
        return GradiumClient(base_url=self.api, api_key=api_key)

    def ws(self, route: str, *, key: str | None = API_KEY, **kwargs: Any) -> Any:
        headers = {"x-api-key": key} if key is not None else {}
        return self.http.ws_connect(f"{self.ws_base}/speech/{route}", headers=headers, **kwargs)


StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(settings: EmulatorSettings | None = None) -> Emulator:
        app = create_emulator_app(settings)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        http = aiohttp.ClientSession()
        started.append((server, http))
        return Emulator(server=server, app=app, http=http)

    yield start
    for server, http in started:
        await http.close()
        await server.close()


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A handler exception is a bug even when the client saw something plausible."""
    yield
    errors = [
        r
        for r in caplog.get_records("call")
        if r.levelno >= logging.ERROR and r.name.startswith(("aiohttp", "gateway"))
    ]
    assert not errors, [r.getMessage() for r in errors]
