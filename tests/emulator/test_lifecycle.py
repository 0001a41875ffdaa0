"""Serving, pacing and clients that go away."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import pytest

from gateway.emulator import EmulatorSettings, run_emulator

from .conftest import API_KEY, Emulator, StartEmulator
from .helpers import of_type

EMMA = "YTpq7expH9539ERJ"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_emulator_serves_until_cancelled() -> None:
    port = free_port()
    task = asyncio.create_task(run_emulator("127.0.0.1", port))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        assert await resp.json() == {"status": "ok"}
                        break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("emulator did not start")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz"):
            pass


async def test_client_vanishing_mid_stream_cleans_up(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": "pcm"})
        await ws.send_json({"type": "text", "text": "a long text " * 50})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
    # The server notices, cancels the session and logs nothing (see `no_server_errors`).
    stats = {}
    for _ in range(100):
        async with emulator.http.get(f"{emulator.base}/_emulator/stats") as resp:
            stats = await resp.json()
        if stats["ws_active"] == 0:
            break
        await asyncio.sleep(0.01)
    assert stats["ws_active"] == 0


async def test_realtime_pacing_holds_frames_back(start_emulator: StartEmulator) -> None:
    # 5 wall seconds per audio second: a frame every 400 ms, so the second one cannot be there yet.
    emu = await start_emulator(EmulatorSettings(tts_realtime_factor=5.0))
    async with emu.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": "pcm_8000"})
        await ws.send_json({"type": "text", "text": "paced"})
        msgs = []
        while not of_type(msgs, "audio"):
            msgs.append(await ws.receive_json(timeout=5))
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.05)


async def test_rest_only_fault_is_not_used_up_by_websockets(emulator: Emulator) -> None:
    emulator.faults.http_status = 503
    emulator.faults.times = 1
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm"})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
    async with emulator.http.get(f"{emulator.api}voices/", headers={"x-api-key": API_KEY}) as resp:
        assert resp.status == 503
    assert emulator.faults.http_status is None
