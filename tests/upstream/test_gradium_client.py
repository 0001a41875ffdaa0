"""The Gradium client on its own: REST and WS sessions against the emulator, and every error shape."""

from __future__ import annotations

import base64

import pytest

from gateway.emulator.faults import FAULTS
from gateway.errors import GatewayError
from gateway.upstream.errors import classify, parse_rest_error
from gateway.upstream.gradium import GradiumClient
from tests.audiocheck import expected_words, speech
from tests.conftest import Emulator

EMMA = "YTpq7expH9539ERJ"


async def test_rest_tts_ndjson_and_rest_asr(client: GradiumClient) -> None:
    stream = await client.post("tts", "gsk_test", json={"text": "hello there", "voice_id": EMMA,
                                                         "output_format": "pcm_16000", "only_audio": False})
    msgs = [m async for m in stream]
    types = [m["type"] for m in msgs]
    assert types[0] == "ready" and types[-1] == "end_of_stream" and "audio" in types
    assert [m["text"] for m in msgs if m["type"] == "text"] == ["hello", "there"]
    pcm = b"".join(base64.b64decode(m["audio"]) for m in msgs if m["type"] == "audio")
    stream = await client.post("asr", "gsk_test", data=pcm, content_type="audio/pcm",
                               params={"input_format": "pcm_16000"})
    words = [m["text"] for m in [m async for m in stream] if m["type"] == "text"]
    assert words == ["hello", "there"]


async def test_ws_asr_session(client: GradiumClient) -> None:
    ws = await client.open_ws("asr", {"input_format": "pcm_16000"}, "gsk_test")
    await ws.send({"type": "audio", "audio": base64.b64encode(speech("one two", 16000)).decode()})
    await ws.send({"type": "end_of_stream"})
    msgs = [m async for m in ws]
    assert ws.request_id and [m["text"] for m in msgs if m["type"] == "text"] == expected_words("one two")
    await ws.close()


@pytest.mark.parametrize(
    ("shape", "status", "message", "kind"),
    [
        ("plain", 500, "API key is revoked or expired", "unauthorized"),
        ("plain", 500, "Embeddings not found for abc", "voice_not_found"),
        ("raw", 502, "upstream connect error", "upstream_error"),
        ("json_error", 400, "bad output_format", "invalid_request"),
        ("json_detail", 401, "Not authenticated", "unauthorized"),
        ("json_detail", 429, "Too many requests", "rate_limited"),
    ],
)
async def test_rest_error_shapes(client: GradiumClient, emulator: Emulator, shape: str, status: int, message: str,
                                 kind: str) -> None:
    emulator.app[FAULTS].update({"http_status": status, "http_error_shape": shape, "http_error_message": message,
                                 "http_error_code": 1008 if "key" in message else 1011})
    with pytest.raises(GatewayError) as e:
        await client.post("tts", "gsk_test", json={"text": "x", "voice_id": EMMA, "output_format": "pcm"})
    # an unknown voice's Gradium uid is not passed on (it may be a custom voice the client knows by another id)
    shown = "The voice was not found" if kind == "voice_not_found" else message
    assert e.value.kind == kind and shown in e.value.message


def test_classify_codes() -> None:
    assert classify(1002, "Session not found. Send setup first.").kind == "invalid_request"
    assert classify(1008, "This request must be sent to the eu region endpoint.").kind == "forbidden"
    assert classify(1011, "no worker available").kind == "upstream_error"
    assert parse_rest_error(500, b"error from server 1008: API key is revoked or expired").kind == "unauthorized"
    # a key that leaks into an upstream message is not passed on
    assert "gsk_live_secret" not in classify(1011, "bad key token=gsk_live_secret").message
