"""Bad input on every ElevenLabs route beyond the first slice (multi-context and dialogue sockets, realtime
STT, STT REST, dialogue REST, catalogue, tokens): ElevenLabs-shaped errors and a 4xx or the socket's error
message and close code, never a 500 or a hang, and the gateway goes on serving other clients."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import orjson
import pytest

from tests.audiocheck import speech, wav_bytes
from tests.conftest import Gateway, assert_upstream_released

VOICE = "21m00Tcm4TlvDq8ikWAM"
XI = {"xi-api-key": "gsk_test"}


async def ws_errors(gw: Gateway, path: str, messages: list[Any], headers: dict[str, str] | None = None,
                    ) -> tuple[list[Any], int | None]:
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + path, headers=XI if headers is None else headers) \
            as ws:
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            elif isinstance(m, str):
                await ws.send_str(m)
            else:
                await ws.send_str(orjson.dumps(m).decode())
        async with asyncio.timeout(10):  # bounded: a hang fails the test instead of stalling the suite
            async for msg in ws:
                got.append(orjson.loads(msg.data))
        return got, ws.close_code


MULTI = f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_16000"
DIALOGUE = "/v1/text-to-dialogue/multi-stream-input?output_format=pcm_16000"


@pytest.mark.parametrize(
    ("path", "messages", "headers", "code"),
    [
        (MULTI, [{"text": " ", "context_id": "a"}], {}, "invalid_api_key"),
        (MULTI, ["{nope"], None, "invalid_input_message"),
        (MULTI, [b"\x00\x01"], None, "invalid_input_message"),
        (MULTI, [{"context_id": "a"}], None, "invalid_input_message"),
        (MULTI, [{"text": 5, "context_id": "a"}], None, "invalid_input_message"),
        (MULTI, [{"text": "x", "context_id": "a", "flush": True, "voice_settings": {"stability": 3}}], None,
         "invalid_parameters"),
        (MULTI.replace(VOICE, "nope"), [{"text": " ", "context_id": "a"}], None, "voice_not_found"),
        (MULTI.replace("pcm_16000", "flac_1"), [{"text": " ", "context_id": "a"}], None, "invalid_output_format"),
        (MULTI + "&inactivity_timeout=900", [{"text": " ", "context_id": "a"}], None, "invalid_parameters"),
        (MULTI, [{"text": " ", "context_id": "a", "generation_config": {"chunk_length_schedule": "fast"}}], None,
         "invalid_parameters"),
        (DIALOGUE, [{"context_id": "a", "inputs": [{"text": "Hi", "voice_id": "nope"}]}], None, "voice_not_found"),
        (DIALOGUE, [{"context_id": "a", "inputs": [{"text": "Hi"}]}], None, "invalid_parameters"),
        (DIALOGUE, [{"context_id": "a", "what": 1}], None, "invalid_input_message"),
    ],
)
async def test_tts_sockets_error_then_1008(gateway: Gateway, path: str, messages: list[Any], headers: Any,
                                           code: str) -> None:
    got, close = await ws_errors(gateway, path, messages, headers)
    assert close == 1008
    assert got[-1]["error"] == code and got[-1]["code"] == 1008 and got[-1]["message"]


async def test_tts_sockets_idle_timeout(gateway: Gateway) -> None:
    got, close = await ws_errors(gateway, MULTI + "&inactivity_timeout=1", [{"text": " ", "context_id": "a"}])
    assert close == 1008 and got[-1]["error"] == "input_timeout_exceeded"


RT = "/v1/speech-to-text/realtime?model_id=scribe_v2_realtime"
CHUNK = {"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(b"\x00" * 640).decode(),
         "commit": False, "sample_rate": 16000}


@pytest.mark.parametrize(
    ("query", "messages", "headers", "message_type", "close_code"),
    [
        ("", [CHUNK], {}, "auth_error", 1008),
        ("&audio_format=mp3_44100", [], None, "invalid_request", 1008),
        ("-whisper", [], None, "invalid_request", 1008),
        ("&commit_strategy=sometimes", [], None, "invalid_request", 1008),
        ("&vad_threshold=2", [], None, "invalid_request", 1008),
        ("", ["not json"], None, "input_error", 1008),
        ("", [b"\x01\x02"], None, "input_error", 1008),
        ("", [{"message_type": "input_audio_chunk", "audio_base_64": "***", "commit": False}], None,
         "input_error", 1008),
        ("", [{"message_type": "input_audio_chunk", "audio_base_64": 12}], None, "input_error", 1008),
        ("", [{"message_type": "start_session"}], None, "input_error", 1008),
    ],
)
async def test_realtime_stt_errors(gateway: Gateway, query: str, messages: list[Any], headers: Any,
                                   message_type: str, close_code: int) -> None:
    path = RT.replace("scribe_v2_realtime", "whisper") if query == "-whisper" else RT + query
    got, close = await ws_errors(gateway, path, messages, headers)
    assert close == close_code
    err = got[-1]
    assert err["message_type"] == message_type and err["error"] and set(err) == {"message_type", "error"}


async def post_form(gw: Gateway, fields: dict[str, Any], *, query: str = "", headers: dict[str, str] | None = None,
                    ) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, bytes):
                form.add_field(k, item, filename="audio.bin", content_type="application/octet-stream")
            else:
                form.add_field(k, item)
    async with aiohttp.ClientSession() as s, s.post(f"{gw.http}/v1/speech-to-text{query}", data=form,
                                                    headers=XI if headers is None else headers) as r:
        return r.status, await r.json()


WAV = wav_bytes("hello", 16000)


@pytest.mark.parametrize(
    ("fields", "query", "headers", "status", "code"),
    [
        ({"model_id": "scribe_v1"}, "", None, 422, "invalid_parameters"),  # no file
        ({"file": WAV}, "", None, 422, "invalid_parameters"),  # no model_id
        ({"file": WAV, "model_id": "whisper-1"}, "", None, 400, "model_not_found"),
        ({"file": b"\x00garbage" * 100, "model_id": "scribe_v1"}, "", None, 400, "invalid_audio"),
        ({"file": WAV, "model_id": "scribe_v1", "num_speakers": "many"}, "", None, 422, "invalid_parameters"),
        ({"file": WAV, "model_id": "scribe_v1", "timestamps_granularity": "syllable"}, "", None, 422,
         "invalid_parameters"),
        ({"file": WAV, "model_id": "scribe_v1", "webhook": "true"}, "", None, 422, "invalid_parameters"),
        ({"file": WAV, "model_id": "scribe_v1"}, "", {}, 401, "invalid_api_key"),
        ({"file": WAV, "model_id": "scribe_v1"}, "?token=gwt_forged", {}, 401, "invalid_api_key"),
    ],
)
async def test_speech_to_text_rest_errors(gateway: Gateway, fields: dict[str, Any], query: str, headers: Any,
                                          status: int, code: str) -> None:
    got, body = await post_form(gateway, fields, query=query, headers=headers)
    assert got == status and body["detail"]["code"] == code and body["detail"]["message"]


async def test_speech_to_text_tolerant_form(gateway: Gateway) -> None:
    # what the SDK sends: "null" strings, booleans as text, repeated keyterms
    status, body = await post_form(gateway, {
        "file": WAV, "model_id": "scribe_v1", "webhook_metadata": "null", "entity_detection": "null",
        "entity_redaction": "null", "language_code": "null", "diarize": "false", "tag_audio_events": "true",
        "keyterms": ["hello", "world"], "num_speakers": "null"})
    assert status == 200 and body["text"] == "Hello"


async def test_speech_to_text_not_multipart(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{gateway.http}/v1/speech-to-text", json={"file": "x"},
                                                    headers=XI) as r:
        assert r.status == 422 and (await r.json())["detail"]["code"] == "invalid_parameters"


async def el_json(gw: Gateway, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                  ) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, gw.http + path, json=body,
                                                       headers=XI if headers is None else headers) as r:
        assert r.content_type == "application/json"
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        ("POST", "/v1/text-to-dialogue/stream", {"inputs": []}, None, 422, "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue/stream", {}, None, 422, "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue/stream", {"inputs": "hello"}, None, 422, "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue/stream", {"inputs": [{"text": "Hi"}]}, None, 422, "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue/stream", {"inputs": [{"text": "", "voice_id": VOICE}]}, None, 422,
         "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue", {"inputs": [{"text": "Hi", "voice_id": "nope"}]}, None, 400,
         "voice_not_found"),
        ("POST", "/v1/text-to-dialogue/with-timestamps", {"inputs": [{"text": "x" * 10_001, "voice_id": VOICE}]},
         None, 422, "invalid_parameters"),
        ("POST", "/v1/text-to-dialogue/stream", {"inputs": [{"text": "Hi", "voice_id": VOICE}]}, {}, 401,
         "invalid_api_key"),
        ("GET", "/v1/voices", None, {}, 401, "invalid_api_key"),
        ("GET", "/v2/voices?page_size=1000", None, None, 422, "invalid_parameters"),
        ("GET", "/v1/voices/not-a-voice", None, None, 400, "voice_not_found"),
        ("GET", "/v1/voices/not-a-voice/settings", None, None, 400, "voice_not_found"),
        # /v1/models is Deepgram's path too: without a credential to tell, the provider prefix decides
        ("GET", "/elevenlabs/v1/models", None, {}, 401, "invalid_api_key"),
        ("GET", "/v1/user", None, {"xi-api-key": "revoked_key_2"}, 401, "invalid_api_key"),
        ("POST", "/v1/single-use-token/everything", None, None, 422, "invalid_parameters"),
        ("POST", "/v1/single-use-token/realtime_scribe", None, {}, 401, "invalid_api_key"),
    ],
)
async def test_rest_errors(gateway: Gateway, method: str, path: str, body: Any, headers: Any, status: int,
                           code: str) -> None:
    got, err = await el_json(gateway, method, path, body, headers)
    assert got == status and err["detail"]["code"] == code and err["detail"]["status"] == code
    assert "revoked_key_2" not in orjson.dumps(err).decode()


async def test_clients_vanishing_mid_stream_free_everything(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        # a multi-context socket with two busy contexts on one multiplexed Gradium socket
        ws = await s.ws_connect(gateway.ws + MULTI, headers=XI)
        for ctx in ("a", "b"):
            await ws.send_json({"text": "A long sentence that keeps the voice busy for a while. ", "context_id": ctx})
        await ws.receive()
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
        # a realtime STT session mid-utterance
        rt = await s.ws_connect(gateway.ws + RT, headers=XI)
        await rt.receive()  # session_started
        pcm = speech("gone in the middle", 16000)
        await rt.send_json({**CHUNK, "audio_base_64": base64.b64encode(pcm[: len(pcm) // 2]).decode()})
        rt._response.connection.transport.abort()  # type: ignore[union-attr]
        # a dialogue socket
        dlg = await s.ws_connect(gateway.ws + DIALOGUE, headers=XI)
        await dlg.send_json({"context_id": "a", "voices": [VOICE]})
        await dlg.send_json({"context_id": "a", "inputs": [{"text": "Talking and talking for a while.",
                                                            "voice_id": VOICE}]})
        await dlg.close()
    await assert_upstream_released(gateway)
    got, close = await ws_errors(gateway, MULTI, [{"text": "Still here ", "context_id": "z"}, {"close_socket": True}])
    assert close == 1000 and got[-1]["isFinal"]
