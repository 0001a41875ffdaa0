"""Gradium failing under the newer ElevenLabs routes (emulator faults): the multi-context socket, realtime
STT, STT REST and text to dialogue report ElevenLabs-shaped errors, nothing hangs, the gateway recovers."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import orjson
import pytest

from gateway.emulator.faults import FAULTS
from tests.audiocheck import speech, wav_bytes
from tests.conftest import Gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"
XI = {"xi-api-key": "gsk_test"}
MULTI = f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_16000"
RT = "/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000"


async def collect(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    async with asyncio.timeout(10):
        return [orjson.loads(m.data) async for m in ws]


@pytest.mark.parametrize(
    ("fault", "error", "close"),
    [
        ({"error_after_messages": 4, "error_code": 1011, "error_message": "worker died"}, "upstream_error", 1011),
        ({"drop_after_messages": 4}, "upstream_error", 1011),
        ({"error_after_messages": 0, "error_code": 1008, "error_message": "Concurrency limit reached"},
         "rate_limit_exceeded", 1008),
    ],
)
async def test_multi_context_upstream_failure(gateway: Gateway, fault: dict, error: str, close: int) -> None:
    gateway.emulator.app[FAULTS].update({**fault, "match_path": "tts"})
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + MULTI, headers=XI) as ws:
        for ctx in ("a", "b"):
            await ws.send_json({"text": "Several words to speak here. ", "context_id": ctx})
        got = await collect(ws)
        assert ws.close_code == close
    assert got[-1]["error"] == error and got[-1]["code"] == close
    gateway.emulator.app[FAULTS].reset()
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + MULTI, headers=XI) as ws:
        await ws.send_json({"text": "Recovered ", "context_id": "a"})
        await ws.send_json({"close_socket": True})
        got = await collect(ws)
        assert ws.close_code == 1000 and got[-1]["isFinal"]


async def test_realtime_stt_upstream_failure_is_transcriber_error(gateway: Gateway) -> None:
    gateway.emulator.app[FAULTS].update({"error_after_messages": 3, "match_path": "asr"})
    pcm = speech("broken along the way", 16000)
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + RT, headers=XI) as ws:
        for i in range(0, len(pcm), 3200):
            await ws.send_json({"message_type": "input_audio_chunk", "commit": False,
                                "audio_base_64": base64.b64encode(pcm[i : i + 3200]).decode()})
        got = await collect(ws)
        assert ws.close_code == 1011
    assert got[0]["message_type"] == "session_started"
    assert got[-1]["message_type"] == "transcriber_error" and got[-1]["error"]


async def test_stt_rest_and_dialogue_upstream_failures(gateway: Gateway) -> None:
    faults = gateway.emulator.app[FAULTS]
    faults.update({"ws_reject_status": 503})
    form = aiohttp.FormData()
    form.add_field("file", wav_bytes("hello", 16000), filename="a.wav", content_type="audio/wav")
    form.add_field("model_id", "scribe_v1")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.http}/v1/speech-to-text", data=form, headers=XI) as r:
            assert r.status == 503 and r.headers["Retry-After"]
            assert (await r.json())["detail"]["code"] == "service_unavailable"
        faults.reset()
        # Gradium failing before the first line's audio: a clean ElevenLabs status
        faults.update({"error_after_messages": 0, "match_path": "tts", "times": 2})
        body = {"inputs": [{"text": "One.", "voice_id": VOICE}, {"text": "Two.", "voice_id": VOICE}]}
        async with s.post(f"{gateway.http}/v1/text-to-dialogue/stream", json=body, headers=XI) as r:
            assert r.status == 502 and (await r.json())["detail"]["code"] == "upstream_error"
        faults.reset()
        async with s.post(f"{gateway.http}/v1/text-to-dialogue/stream?output_format=pcm_16000", json=body,
                          headers=XI) as r:
            assert r.status == 200 and len(await r.read()) > 0
