"""Bad input on every Deepgram route gets a Deepgram-shaped error (HTTP body + `dg-request-id`, refused
upgrade with `dg-error`, or an `Error` message and close code), never a 500 or a hang, and the gateway
keeps serving other clients meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.audiocheck import speech, wav_bytes
from tests.conftest import Emulator, Gateway, assert_upstream_released, gateway_settings, start_gateway

DG = {"Authorization": "Token gsk_test"}


async def post(gw: Gateway, path: str, *, data: Any = None, json: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(gw.http + path, data=data, json=json,
                                                    headers={**DG, **(headers or {})}) as r:
        body = await r.read()
        assert r.headers["Content-Type"].startswith("application/json"), r.headers
        parsed = orjson.loads(body)
        assert r.headers["dg-request-id"] == parsed["request_id"]
        return r.status, parsed, r.headers


@pytest.mark.parametrize(("query", "data", "ctype", "status", "code"), [
    ("", b"\x13\x37" * 4000, "audio/wav", 400, "Bad Request"),                         # corrupt audio
    ("?encoding=opus&sample_rate=48000", speech("hi", 16000), "application/octet-stream", 400, "Bad Request"),
    ("?encoding=linear16&sample_rate=500", speech("hi", 16000), "application/octet-stream", 400, "Bad Request"),
    ("?encoding=mp9", b"abc", "audio/mpeg", 400, "Bad Request"),
    ("?punctuate=maybe", wav_bytes("hi", 16000), "audio/wav", 400, "Bad Request"),
    ("", b"", "audio/wav", 400, "Bad Request"),                                         # empty body
    ("", b'{"url": ', "application/json", 400, "INVALID_JSON"),                           # malformed JSON
    ("", b"{}", "application/json", 400, "Bad Request"),                                  # JSON without url
    ("", b'{"url": 5}', "application/json", 400, "Bad Request"),
])
async def test_prerecorded_bad_input(gateway: Gateway, query: str, data: bytes, ctype: str, status: int,
                                     code: str) -> None:
    got, body, _ = await post(gateway, "/v1/listen" + query, data=data, headers={"Content-Type": ctype})
    assert (got, body["err_code"]) == (status, code) and body["err_msg"] and body["category"] == code


async def test_prerecorded_oversize_and_no_key(emulator: Emulator, tls_files: dict[str, Path]) -> None:
    settings = gateway_settings(emulator, tls_files, limits={"max_body_bytes": 4096})
    async with start_gateway(settings, emulator) as gw:
        got, body, _ = await post(gw, "/v1/listen", data=wav_bytes("a long enough recording", 16000),
                                  headers={"Content-Type": "audio/wav"})
        assert got == 413 and body["err_code"] == "PAYLOAD_TOO_LARGE"
        got, body, _ = await post(gw, "/v1/listen", data=b"x", headers={"Authorization": ""})
        assert got == 401 and body["err_code"] == "INVALID_AUTH"


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/speak", b'{"text": ', 400),
    ("/v1/speak?encoding=linear16&sample_rate=12345", b'{"text": "hi"}', 400),
    ("/v1/speak?speed=9", b'{"text": "hi"}', 400),
    ("/v1/speak?container=mkv", b'{"text": "hi"}', 400),
    ("/v1/speak", b'{"text": ""}', 400),
    ("/v1/auth/grant", b"[1, 2]", 400),
    ("/v1/auth/grant", b'{"ttl_seconds": 0}', 400),
    ("/v1/auth/grant", b'{"ttl_seconds": 99999}', 400),
])
async def test_rest_bad_input(gateway: Gateway, path: str, body: bytes, status: int) -> None:
    got, err, _ = await post(gateway, path, data=body, headers={"Content-Type": "application/json"})
    assert got == status and err["err_msg"]


async def ws_collect(gw: Gateway, path: str, messages: list[Any], *, wait_close: bool = True) -> tuple[list[Any], Any]:
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + path, headers=DG) as ws:
        assert ws._response.headers["dg-request-id"]
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            elif isinstance(m, str):
                await ws.send_str(m)
            else:
                await ws.send_str(orjson.dumps(m).decode())
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                got.append(orjson.loads(msg.data))
        return got, ws.close_code


@pytest.mark.parametrize("query", [
    "?eot_threshold=2", "?eager_eot_threshold=0.95", "?eot_timeout_ms=10", "?encoding=mp3", "?model=nova-3",
    "?sample_rate=abc",
])
async def test_flux_bad_parameters_refuse_the_upgrade(gateway: Gateway, query: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{gateway.http}/v2/listen{query}", headers=DG) as r:
        body = await r.json()
        assert r.status == 400 and body["err_msg"] and r.headers["dg-error"] and r.headers["dg-request-id"]


@pytest.mark.parametrize(("path", "query"), [("/v1/speak", "?model=aura-nobody-en"), ("/v1/speak", "?encoding=opus"),
                                            ("/v1/speak", "?sample_rate=11"), ("/v2/listen", "")])
async def test_ws_refusals_are_deepgram_shaped(gateway: Gateway, path: str, query: str) -> None:
    headers = DG if query else {"Authorization": "Token revoked_key"}
    async with aiohttp.ClientSession() as s, s.get(f"{gateway.http}{path}{query}", headers=headers) as r:
        body = await r.json()
        assert r.status in (400, 401) and body["err_code"] and r.headers["dg-error"] == body["err_msg"]


async def test_flux_bad_messages(gateway: Gateway) -> None:
    q = "/v2/listen?model=flux-general-en&encoding=linear16&sample_rate=16000"
    # unknown types and Configure with bad values: answered, the session goes on
    got, close = await ws_collect(gateway, q, [
        {"type": "Bogus"}, {"no_type": 1},
        {"type": "Configure", "thresholds": {"eot_threshold": 0.2}},
        {"type": "Configure", "thresholds": "high"},
        {"type": "Configure", "thresholds": {"eager_eot_threshold": 0.9, "eot_threshold": 0.6}},
        {"type": "Configure", "keyterms": "not a list"},
        speech("still fine.", 16000), bytes(16000 * 2), {"type": "CloseStream"},
    ])
    assert close == 1000 and got[0]["type"] == "Connected"
    fails = [m for m in got if m["type"] == "ConfigureFailure"]
    assert len(fails) == 4 and all(f["description"] and f["error_code"] == f["code"] for f in fails)
    assert [m["transcript"] for m in got if m.get("event") == "EndOfTurn"] == ["Still fine."]
    assert [m["sequence_id"] for m in got] == list(range(len(got)))
    # text that is not JSON is an unknown text message: ignored (spec: never fail on them)
    got, close = await ws_collect(gateway, q, ["{nope", "plain words", {"type": "CloseStream"}])
    assert close == 1000 and not [m for m in got if m["type"] == "Error"]
    # corrupt audio: an Error message and a Deepgram close code
    got, close = await ws_collect(gateway, "/v2/listen?model=flux-general-en&encoding=ogg-opus",
                                  [b"OggS" + b"\x07" * 4000, {"type": "CloseStream"}])
    assert close == 1008 and got[-1]["type"] == "Error" and got[-1]["description"]


async def test_speak_ws_bad_messages(gateway: Gateway) -> None:
    path = "/v1/speak?model=aura-asteria-en&encoding=linear16&sample_rate=16000"
    for bad in ("{nope", {"type": "Speak", "text": 5}, b"\x00\x01"):
        got, close = await ws_collect(gateway, path, [bad])
        assert close == 1008, bad
        assert got[0]["type"] == "Metadata" and got[-1]["type"] == "Error" and got[-1]["description"]
    # Flush with nothing to say still answers; Close right after
    got, close = await ws_collect(gateway, path, [{"type": "Flush"}, {"type": "Close"}])
    assert close == 1000 and [m["type"] for m in got] == ["Metadata", "Flushed"]


async def test_clients_vanishing_mid_stream_and_others_still_served(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        flux = await s.ws_connect(f"{gateway.ws}/v2/listen?encoding=linear16&sample_rate=16000", headers=DG)
        await flux.send_bytes(speech("going away now", 16000)[:16000])
        speak = await s.ws_connect(f"{gateway.ws}/v1/speak?encoding=linear16&sample_rate=16000", headers=DG)
        await speak.send_str('{"type": "Speak", "text": "A long sentence that keeps the voice busy for a while."}')
        await speak.send_str('{"type": "Flush"}')
        await speak.receive()  # Metadata
        await speak.receive()  # audio started
        for ws in (flux, speak):
            ws._response.connection.transport.abort()  # gone without a close frame
    await assert_upstream_released(gateway)

    async def good_flux() -> list[str]:
        got, close = await ws_collect(gateway, "/v2/listen?encoding=linear16&sample_rate=16000",
                                      [speech("all good.", 16000), bytes(16000 * 2), {"type": "CloseStream"}])
        assert close == 1000
        return [m["transcript"] for m in got if m.get("event") == "EndOfTurn"]

    async def good_rest() -> int:
        got, _, _ = await post(gateway, "/v1/listen?encoding=bogus", data=b"x")
        return got

    results = await asyncio.gather(good_flux(), good_flux(), good_rest())
    assert results == [["All good."], ["All good."], 400]
