"""The gateway against the emulator with faults switched on: every failure reaches the client in
its provider's shape, nothing hangs, and the gateway keeps serving."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from gateway.emulator.faults import FAULTS
from tests.audiocheck import decode, expected_words, speech, words
from tests.conftest import Gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"
XI = {"xi-api-key": "gsk_test"}
TEXT = "Faults happen. The gateway copes."


async def tts_rest(gw: Gateway, fmt: str = "pcm_16000") -> tuple[int, bytes | None, str | None]:
    """(status, body or None when the download broke, error code)."""
    url = f"{gw.http}/v1/text-to-speech/{VOICE}/stream?output_format={fmt}"
    async with aiohttp.ClientSession() as s, s.post(url, json={"text": TEXT}, headers=XI) as r:
        try:
            body = await r.read()
        except aiohttp.ClientPayloadError:
            return r.status, None, None
        code = orjson.loads(body)["detail"]["code"] if r.status >= 400 else None
        return r.status, body, code


async def tts_ws(gw: Gateway) -> tuple[list[dict], int | None]:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gw.ws}/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000",
                                headers=XI)
        for m in ({"text": " "}, {"text": TEXT + " "}, {"text": ""}):
            await ws.send_str(orjson.dumps(m).decode())
        got = [orjson.loads(m.data) async for m in ws]
        return got, ws.close_code


async def assert_healthy(gw: Gateway) -> None:
    gw.emulator.app[FAULTS].reset()
    status, body, _ = await tts_rest(gw)
    assert status == 200 and body
    d = decode(body, "s16le", 16000)
    assert words(d.pcm, 16000) == expected_words(TEXT)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"ws_reject_status": 503}, 503, "service_unavailable"),
        ({"ws_reject_status": 401}, 401, "invalid_api_key"),
        ({"error_after_messages": 0, "error_code": 1011, "error_message": "no worker available"}, 502,
         "upstream_error"),
        ({"error_after_messages": 0, "error_code": 1008, "error_message": "Concurrency limit reached"}, 429,
         "rate_limit_exceeded"),
        ({"drop_after_messages": 0}, 502, "upstream_error"),
    ],
)
async def test_rest_failures_before_audio_get_a_status(gateway: Gateway, fault: dict, status: int,
                                                       code: str) -> None:
    gateway.emulator.app[FAULTS].update(fault)
    got, _, err = await tts_rest(gateway)
    assert (got, err) == (status, code)
    await assert_healthy(gateway)


@pytest.mark.parametrize("fault", [{"error_after_messages": 4}, {"drop_after_messages": 4}])
async def test_rest_failure_mid_stream_breaks_the_download(gateway: Gateway, fault: dict) -> None:
    gateway.emulator.app[FAULTS].update(fault)
    status, body, _ = await tts_rest(gateway)
    # headers were sent: the only honest signal left is a broken chunked body, never a short "success"
    assert status == 200 and body is None
    await assert_healthy(gateway)


@pytest.mark.parametrize(
    ("fault", "close"),
    [({"error_after_messages": 4}, 1011), ({"drop_after_messages": 4}, 1011),
     ({"error_after_messages": 0, "error_code": 1008, "error_message": "API key is revoked or expired"}, 1008)],
)
async def test_ws_failures_are_elevenlabs_errors(gateway: Gateway, fault: dict, close: int) -> None:
    gateway.emulator.app[FAULTS].update(fault)
    got, code = await tts_ws(gateway)
    assert code == close and got[-1]["code"] == close and got[-1]["error"] and got[-1]["message"]
    assert not any(m.get("isFinal") for m in got)
    await assert_healthy(gateway)


async def test_deepgram_upstream_error_mid_stream(gateway: Gateway) -> None:
    gateway.emulator.app[FAULTS].update({"error_after_messages": 6, "match_path": "asr"})
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gateway.ws}/v1/listen?encoding=linear16&sample_rate=16000",
                                headers={"Authorization": "token gsk_test"})
        await ws.send_bytes(speech("hello there friend", 16000))
        msgs = [orjson.loads(m.data) async for m in ws]
    assert ws.close_code == 1011 and msgs[-1]["type"] == "Error"
    await assert_healthy(gateway)


@pytest.mark.parametrize("fault", [{"ready_delay_s": 0.2, "first_audio_delay_s": 0.1}, {"frame_delay_s": 0.005}])
async def test_latency_and_slow_streams_still_deliver_everything(gateway: Gateway, fault: dict) -> None:
    gateway.emulator.app[FAULTS].update(fault)
    got, code = await tts_ws(gateway)
    assert code == 1000 and got[-1] == {"isFinal": True}
    import base64

    audio = b"".join(base64.b64decode(m["audio"]) for m in got if m.get("audio"))
    assert words(decode(audio, "s16le", 16000).pcm, 16000) == expected_words(TEXT)
