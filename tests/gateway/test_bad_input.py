"""Bad input on every route of the first slice gets the provider's own error shape and a 4xx
(WebSocket: its error message and close code); never a 500, a hang or a leaked key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.audiocheck import speech
from tests.conftest import Emulator, Gateway, assert_upstream_released, gateway_settings, start_gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"
XI = {"xi-api-key": "gsk_test"}
DG = {"Authorization": "Token gsk_test"}


async def el_post(gw: Gateway, body: Any, *, path: str = f"/v1/text-to-speech/{VOICE}", query: str = "",
                  headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        data = raw if raw is not None else orjson.dumps(body)
        async with s.post(gw.http + path + query, data=data, headers=XI if headers is None else headers) as r:
            payload = await r.read()
            assert r.headers.get("content-type", "").startswith("application/json"), r.headers
            return r.status, orjson.loads(payload)


@pytest.mark.parametrize(
    ("body", "query", "status", "code", "param"),
    [
        ({"text": 5}, "", 422, "invalid_parameters", "text"),
        ({}, "", 422, "invalid_parameters", "text"),
        ({"text": ""}, "", 422, "invalid_parameters", "text"),
        ({"text": "hi", "voice_settings": "fast"}, "", 422, "invalid_parameters", "voice_settings"),
        ({"text": "hi", "voice_settings": {"speed": 5}}, "", 422, "invalid_parameters", "speed"),
        ({"text": "hi", "seed": -1}, "", 422, "invalid_parameters", "seed"),
        ({"text": "hi", "model_id": "eleven_nonexistent"}, "", 400, "model_not_found", "model_id"),
        ({"text": "hi"}, "?output_format=flac_44100", 422, "invalid_output_format", "output_format"),
        ({"text": "hi"}, "?optimize_streaming_latency=nine", 422, "invalid_parameters", "optimize_streaming_latency"),
        ([1, 2], "", 422, "invalid_parameters", None),
        ({"text": "x" * 10_001}, "", 422, "invalid_parameters", "text"),
    ],
)
async def test_elevenlabs_rest_validation(gateway: Gateway, body: Any, query: str, status: int, code: str,
                                          param: str | None) -> None:
    got, err = await el_post(gateway, body, query=query)
    assert got == status
    detail = err["detail"]
    assert detail["code"] == code and detail["status"] == code and detail["message"]
    assert detail.get("param") == param and detail["request_id"]


async def test_elevenlabs_rest_malformed_json_unknown_voice_and_auth(gateway: Gateway) -> None:
    assert (await el_post(gateway, None, raw=b'{"text": "hi",'))[0] == 422
    status, err = await el_post(gateway, {"text": "hi"}, path="/v1/text-to-speech/nope")
    assert (status, err["detail"]["code"]) == (400, "voice_not_found")
    status, err = await el_post(gateway, {"text": "hi"}, headers={})
    assert (status, err["detail"]["code"]) == (401, "invalid_api_key")
    # a key Gradium refuses: its 1008 becomes ElevenLabs' 401, and the key is not echoed
    status, err = await el_post(gateway, {"text": "hi"}, headers={"xi-api-key": "revoked_key_123"})
    assert (status, err["detail"]["code"]) == (401, "invalid_api_key")
    assert "revoked_key_123" not in orjson.dumps(err).decode()


async def test_unknown_routes_and_methods_are_json(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(gateway.http + "/v1/nothing-here") as r:
            assert r.status == 404 and (await r.json())["detail"]
        async with s.get(gateway.http + f"/v1/text-to-speech/{VOICE}") as r:
            assert r.status == 405 and (await r.json())["detail"]


async def test_oversize_body_is_413(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    settings = gateway_settings(emulator, tls_files, limits={"max_body_bytes": 1024})
    async with start_gateway(settings, emulator) as gw:
        status, err = await el_post(gw, {"text": "x" * 5000})
        assert (status, err["detail"]["code"]) == (413, "payload_too_large")


async def el_ws(gw: Gateway, messages: list[Any], *, query: str = "", headers: dict[str, str] | None = None,
                voice: str = VOICE) -> tuple[list[Any], int | None]:
    """Send `messages` (dicts as JSON, bytes as binary, str as raw text) and collect until close."""
    url = f"{gw.ws}/v1/text-to-speech/{voice}/stream-input{query}"
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url, headers=XI if headers is None else headers) as ws:
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            elif isinstance(m, str):
                await ws.send_str(m)
            else:
                await ws.send_str(orjson.dumps(m).decode())
        async for msg in ws:
            got.append(orjson.loads(msg.data))
        return got, ws.close_code


@pytest.mark.parametrize(
    ("messages", "headers", "voice", "code"),
    [
        ([{"text": " "}], {}, VOICE, "invalid_api_key"),
        (["{not json"], None, VOICE, "invalid_input_message"),
        ([{"text": " "}, b"\x00\x01"], None, VOICE, "invalid_input_message"),
        ([{"text": " "}, {"text": 5}], None, VOICE, "invalid_input_message"),
        ([{"text": " "}], None, "not-a-voice", "voice_not_found"),
        ([{"text": " ", "voice_settings": {"speed": 9}}], None, VOICE, "invalid_parameters"),
    ],
)
async def test_elevenlabs_ws_errors_then_1008(gateway: Gateway, messages: list[Any], headers: Any, voice: str,
                                              code: str) -> None:
    got, close = await el_ws(gateway, messages, headers=headers, voice=voice)
    assert close == 1008
    assert got[-1]["error"] == code and got[-1]["code"] == 1008 and got[-1]["message"]


async def test_elevenlabs_ws_key_in_first_message(gateway: Gateway) -> None:
    got, close = await el_ws(gateway, [{"text": " ", "xi_api_key": "gsk_test"}, {"text": "Hi there. "}, {"text": ""}],
                             headers={}, query="?output_format=pcm_16000")
    assert close == 1000 and got[-1] == {"isFinal": True}
    assert any(m.get("audio") for m in got[:-1])


async def test_elevenlabs_ws_inactivity_timeout(gateway: Gateway) -> None:
    got, close = await el_ws(gateway, [{"text": " "}], query="?inactivity_timeout=1")
    assert close == 1008 and got[-1]["error"] == "input_timeout_exceeded"


async def test_client_vanishing_mid_stream_frees_upstream(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gateway.ws}/v1/text-to-speech/{VOICE}/stream-input", headers=XI)
        await ws.send_str('{"text": " "}')
        await ws.send_str('{"text": "A long sentence that keeps the voice busy for a while. "}')
        await ws.receive()  # audio started
        ws._response.connection.transport.abort()  # vanish without a close frame
        dg = await s.ws_connect(f"{gateway.ws}/v1/listen?encoding=linear16&sample_rate=16000", headers=DG)
        await dg.send_bytes(speech("hi", 16000)[:3200])
        await dg.close()  # vanish politely mid-stream
    await assert_upstream_released(gateway)
    got, close = await el_ws(gateway, [{"text": " "}, {"text": "Still here. "}, {"text": ""}])
    assert close == 1000 and got[-1] == {"isFinal": True}


async def dg_refused(gw: Gateway, query: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{gw.http}/v1/listen{query}",
                                                   headers=DG if headers is None else headers) as r:
        return r.status, await r.json(), r.headers


@pytest.mark.parametrize(
    ("query", "status"),
    [("?encoding=mp9", 400), ("?encoding=linear16&sample_rate=abc", 400), ("?channels=0", 400),
     ("?interim_results=perhaps", 400)],
)
async def test_deepgram_bad_parameters_refuse_the_upgrade(gateway: Gateway, query: str, status: int) -> None:
    got, body, headers = await dg_refused(gateway, query)
    assert got == status and body["err_msg"] and headers["dg-error"] and headers["dg-request-id"]


async def test_deepgram_corrupt_audio_closes_with_data_error(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gateway.ws}/v1/listen?encoding=ogg-opus&sample_rate=48000", headers=DG)
        await ws.send_bytes(b"OggS" + b"\x07" * 4000)
        await ws.send_str('{"type": "CloseStream"}')
        msgs = [m async for m in ws]
        assert ws.close_code == 1008
        err = orjson.loads(msgs[-1].data)
        assert err["type"] == "Error" and err["code"] == "DATA-0000"


async def test_deepgram_unknown_messages_are_ignored(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gateway.ws}/v1/listen?encoding=linear16&sample_rate=16000", headers=DG)
        await ws.send_str('{"type": "Bogus"}')
        await ws.send_str('{"no_type": true}')
        await ws.send_bytes(speech("fine", 16000))
        await ws.send_str('{"type": "CloseStream"}')
        msgs = [orjson.loads(m.data) async for m in ws]
        assert ws.close_code == 1000 and msgs[-1]["type"] == "Metadata"
        assert any(m.get("type") == "Results" and m["channel"]["alternatives"][0]["transcript"] == "fine"
                   for m in msgs)


async def test_a_bug_is_a_provider_shaped_500_not_a_crash(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.dialects.http import BUILTINS

    async def broken(*_: Any) -> Any:
        raise RuntimeError("simulated bug")

    monkeypatch.setitem(BUILTINS, "catalogue", broken)
    async with aiohttp.ClientSession() as s, s.get(gateway.http + "/v1/voices", headers=XI) as r:
        body = await r.json()
        assert r.status == 500 and body["detail"]["code"] == "internal_error"
        assert "simulated bug" not in orjson.dumps(body).decode()
