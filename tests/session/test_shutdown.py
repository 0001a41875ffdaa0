"""SIGTERM on a real `gradium-gateway serve` process: /readyz turns 503 at once, new work is refused, a live
socket gets its final audio and then the going-away close (1001), and the process exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import aiohttp

from gateway.emulator.faults import FAULTS
from tests.conftest import Emulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_sigterm_drains_sockets_then_exits_zero(emulator: Emulator) -> None:
    emulator.app[FAULTS].update({"frame_delay_s": 0.05})  # a slow upstream: the drain takes a while
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIUM_", "GATEWAY_"))}
    env.update(GATEWAY_DRAIN_S="15", GRADIUM_BASE_URL=emulator.url)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "1"],
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(1200):  # start-up (bounded: 60 s on a loaded machine)
                try:
                    async with s.get(base + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            path = "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input?output_format=pcm_16000"
            async with s.ws_connect(base.replace("http", "ws") + path, headers={"xi-api-key": "k"}) as ws:
                await ws.send_json({"text": " "})
                await ws.send_json({"text": "Still being spoken when the gateway stops "})
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGTERM)
                ready: tuple[int, object] = (0, None)
                for _ in range(100):  # at once: the load balancer stops sending
                    async with s.get(base + "/readyz") as r:
                        ready = (r.status, (await r.json()).get("status"))
                    if ready[0] == 503:
                        break
                    await asyncio.sleep(0.02)
                assert ready == (503, "draining")
                async with s.post(base + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", json={"text": "late"},
                                  headers={"xi-api-key": "k"}) as r:
                    assert r.status == 503
                got = [json.loads(m.data) async for m in ws]
            assert ws.close_code == 1001
            assert got[-1] == {"isFinal": True} and any(m.get("audio") for m in got)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
