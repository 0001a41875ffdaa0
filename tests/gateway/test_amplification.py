"""Amplification (issue 8, defect 10): no error repeats a whole offending value, and no identifier of
unbounded length is echoed on every event."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.errors import MAX_MESSAGE_CHARS, GatewayError
from tests.conftest import Gateway

BIG = "Z" * 1_000_000
CA = {"X-API-Key": "gsk_amp", "Cartesia-Version": "2026-03-01"}
FMT = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
VOICE = {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"}


@pytest.mark.parametrize(("path", "headers", "body"), [
    ("/tts/sse", CA, {"model_id": "sonic-2", "transcript": "hi", "voice": VOICE, "output_format": FMT,
                      "context_id": BIG}),
    ("/tts/bytes", CA, {"model_id": BIG, "transcript": "hi", "voice": VOICE, "output_format": FMT}),
    ("/tts/bytes", CA, {"model_id": "sonic-2", "transcript": "hi", "voice": {"mode": "id", "id": BIG},
                        "output_format": FMT}),
    ("/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", {"xi-api-key": "k"}, {"text": "hi", "model_id": BIG}),
    ("/v1/text-to-dialogue", {"xi-api-key": "k"}, {"inputs": [{"text": "hi", "voice_id": BIG}]}),
    ("/v1/speak?model=aura-2-thalia-en", {"Authorization": "Token k"}, {"text": "hi", BIG[:100]: BIG}),
])
async def test_errors_do_not_repeat_big_values(gateway: Gateway, path: str, headers: dict[str, str],
                                               body: dict) -> None:
    async with aiohttp.ClientSession() as s, s.post(gateway.http + path, json=body, headers=headers) as r:
        data = await r.read()
        assert len(data) < 4096 or r.status == 200, (r.status, len(data), data[:300])
        if r.status == 200:  # the big value was ignored, not echoed
            assert BIG[:1000].encode() not in data


async def test_echoed_query_identifiers_are_bounded(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{gateway.http}/v1/listen?model={'m' * 4000}", data=b"RIFF",
                      headers={"Authorization": "Token k", "Content-Type": "audio/wav"}) as r:
        assert r.status == 400 and len(await r.read()) < 2048


def test_gateway_errors_are_bounded() -> None:
    err = GatewayError("invalid_request", "bad value: " + BIG, BIG)
    assert len(err.message) <= MAX_MESSAGE_CHARS and len(err.param or "") <= 64


async def test_cartesia_socket_context_ids_are_bounded(gateway: Gateway) -> None:
    """A 100 KB context_id was repeated on every chunk (11 messages, 1.1 MB out): now one error names it."""
    out = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + "/tts/websocket", headers=CA) as ws:
        await ws.send_json({"context_id": "z" * 100_000, "model_id": "sonic-2", "transcript": "Hi there",
                            "voice": VOICE, "output_format": FMT})
        try:
            while True:
                msg = await ws.receive(timeout=3)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                out += len(msg.data)
                if '"done":true' in msg.data:
                    break
        except TimeoutError:
            pass
    assert out < 250_000
