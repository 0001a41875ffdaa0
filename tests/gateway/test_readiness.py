"""/readyz (issue 8, newcomer defects): ready only when Gradium answers."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp

from gateway.config import Settings
from tests.conftest import Emulator, Gateway, start_gateway


async def test_ready_with_a_reachable_gradium(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s, s.get(gateway.http + "/readyz") as r:
        assert r.status == 200 and (await r.json())["status"] == "ready"


async def test_not_ready_when_gradium_is_unreachable(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    settings = Settings.model_validate({"tls_cert": tls_files["cert"], "tls_key": tls_files["key"],
                                        "gradium": {"base_url": f"http://127.0.0.1:{dead}/api", "api_key": "k"}})
    async with start_gateway(settings, emulator) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.http + "/readyz") as r:
            assert r.status == 503 and (await r.json())["status"] == "gradium_unreachable"
        async with s.get(gw.http + "/healthz") as r:
            assert r.status == 200  # alive, just not ready
