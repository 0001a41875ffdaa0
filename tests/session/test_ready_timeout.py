"""Issue 8 item 14: every WebSocket route gives Gradium `gradium.ready_timeout_s` to answer, then fails in the
dialect's shape (no silent wait, no silent retry)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.emulator.faults import FAULTS
from tests.conftest import Emulator, gateway_settings, start_gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"


async def test_websocket_routes_honour_the_ready_timeout(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    emulator.app[FAULTS].update({"ready_delay_s": 5.0})
    settings = gateway_settings(emulator, tls_files, gradium={"base_url": emulator.url, "ready_timeout_s": 0.5})
    async with start_gateway(settings, emulator) as gw, aiohttp.ClientSession() as s:
        # ElevenLabs stream-input: the request starts with the first message, its `ready` never comes in time
        path = f"/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
        async with s.ws_connect(gw.ws + path, headers={"xi-api-key": "k"}) as ws:
            await ws.send_json({"text": "Hello "})
            msgs = await asyncio.wait_for(ws.receive_json(), 4)
            assert "did not answer in time" in msgs["message"]
            await asyncio.wait_for(ws.receive(), 4)
        assert ws.close_code == 1011
        # Cartesia's TTS socket (contexts on one shared Gradium socket): that context's error, in time
        async with s.ws_connect(gw.ws + "/tts/websocket?api_key=k&cartesia_version=2025-04-16") as ws:
            await ws.send_json({"context_id": "a", "transcript": "Hi", "continue": False, "model_id": "sonic-2",
                                "voice": {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
                                "output_format": {"container": "raw", "encoding": "pcm_s16le",
                                                  "sample_rate": 16000}})
            err = await asyncio.wait_for(ws.receive_json(), 4)
            assert err["type"] == "error" and err["context_id"] == "a" and "in time" in err["message"]
