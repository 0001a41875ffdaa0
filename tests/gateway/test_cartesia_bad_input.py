"""Bad input on every Cartesia route gets a Cartesia-shaped error (never a 500, a hang or a leaked key),
and the gateway goes on serving: other contexts on the same socket, other clients."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest

from gateway.emulator.faults import FAULTS
from gateway.emulator.stats import STATS
from tests.audiocheck import expected_words, speech, wav_bytes, words
from tests.conftest import Gateway, assert_upstream_released

KEY = "gsk_test"
H = {"X-API-Key": KEY, "Cartesia-Version": "2026-03-01"}
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
RAW16 = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
GEN = {"model_id": "sonic-3", "voice": {"mode": "id", "id": KATIE}, "output_format": RAW16}


def body(**over: Any) -> dict[str, Any]:
    return {**GEN, "transcript": "Hello world.", **over}


async def post(gw: Gateway, path: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as s, s.post(gw.http + path, headers=H if headers is None else headers,
                                                    **kw) as r:
        raw = await r.read()
        if r.content_type == "application/json":
            return r.status, await r.json(), r.content_type
        return r.status, raw.decode() if r.content_type.startswith("text/") else raw, r.content_type


def assert_cartesia_error(data: Any, status: int, code: str) -> None:
    assert isinstance(data, dict), data
    assert data["error_code"] == code and data["title"] and data["message"] and data["request_id"]
    assert "gsk_" not in str(data)


async def read_until_done(ws: aiohttp.ClientWebSocketResponse, contexts: set[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in contexts}
    pending = set(contexts)
    while pending:
        msg = await ws.receive_json(timeout=15)
        out.setdefault(msg.get("context_id"), []).append(msg)
        if msg.get("done"):
            pending.discard(msg.get("context_id"))
    return out


# -- HTTP ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("voice", "code"),
    [
        ({"mode": "embedding", "embedding": [0.1, 0.2]}, "invalid_request"),
        ({"embedding": [0.1]}, "invalid_request"),
        (42, "invalid_request"),
        ({"mode": "id"}, "invalid_request"),
        ("not-a-cartesia-voice", "voice_not_found"),
    ],
)
async def test_tts_bad_voice_shapes(gateway: Gateway, voice: Any, code: str) -> None:
    status, data, _ = await post(gateway, "/tts/bytes", json=body(voice=voice))
    assert status == 400
    assert_cartesia_error(data, 400, code)


@pytest.mark.parametrize(
    "fmt",
    [
        {"container": "flac", "encoding": "pcm_s16le", "sample_rate": 16000},
        {"container": "raw", "sample_rate": 16000},  # raw needs an encoding
        {"container": "raw", "encoding": "pcm_s24le", "sample_rate": 16000},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 1000},
        {"container": "raw", "encoding": "pcm_s16le", "sample_rate": "fast"},
        {"container": "raw", "encoding": "pcm_s16le"},
        {"container": "mp3", "sample_rate": 44100, "bit_rate": 5},
        "pcm_16000",
    ],
)
async def test_tts_bad_output_format(gateway: Gateway, fmt: Any) -> None:
    status, data, _ = await post(gateway, "/tts/bytes", json=body(output_format=fmt))
    assert status == 400
    assert_cartesia_error(data, 400, "invalid_output_format")


async def test_tts_bad_requests(gateway: Gateway) -> None:
    for kw, code in [
        ({"data": b"{not json", "headers": {**H, "Content-Type": "application/json"}}, "invalid_request"),
        ({"json": [1, 2]}, "invalid_request"),
        ({"json": {**GEN}}, "invalid_request"),  # no transcript
        ({"json": body(transcript="")}, "invalid_request"),
        ({"json": {k: v for k, v in body().items() if k != "model_id"}}, "invalid_request"),
        ({"json": body(generation_config={"speed": 9})}, "invalid_request"),
        ({"json": body(speed="warp")}, "invalid_request"),
    ]:
        status, data, _ = await post(gateway, "/tts/bytes", **kw)
        assert status == 400, kw
        assert_cartesia_error(data, 400, code)
    # SSE takes raw output only
    status, data, _ = await post(gateway, "/tts/sse", json=body(output_format={**RAW16, "container": "wav"}))
    assert status == 400 and data["error_code"] == "invalid_output_format"


async def test_error_shape_follows_the_version(gateway: Gateway) -> None:
    bad = body(voice="nope")
    status, data, ctype = await post(gateway, "/tts/bytes", json=bad)
    assert status == 400 and ctype == "application/json" and data["title"] == "Voice not found"
    for version in ("2024-06-10", "2024-11-13", "2025-04-16", "2025-11-04"):
        status, data, ctype = await post(gateway, "/tts/bytes", json=bad, headers={**H, "Cartesia-Version": version})
        assert status == 400 and ctype == "text/plain" and data.startswith("Voice not found: ")
    for version in ("2026-03-01", "2026-08-14", "2027-01-01"):
        status, data, ctype = await post(gateway, "/tts/bytes", json=bad, headers={**H, "Cartesia-Version": version})
        assert ctype == "application/json" and data["error_code"] == "voice_not_found"
    status, data, _ = await post(gateway, "/tts/bytes", json=body(), headers={**H, "Cartesia-Version": "yesterday"})
    assert status == 400 and data["message"].startswith("version")


async def test_sse_failure_mid_stream_is_an_error_event(gateway: Gateway) -> None:
    gateway.emulator.app[FAULTS].update({"error_after_messages": 6})  # Gradium fails after a few messages
    long = body(context_id="s1", transcript=" ".join(["word"] * 40))
    async with aiohttp.ClientSession() as s, s.post(f"{gateway.http}/tts/sse", headers=H, json=long) as r:
        assert r.status == 200
        events = (await r.read()).decode().strip().split("\n\n")
    last = events[-1].split("\n")
    assert last[0] == "event: error"
    err = orjson.loads(last[1].removeprefix("data: "))
    assert err["type"] == "error" and err["done"] is True and err["status_code"] >= 500 and err["context_id"] == "s1"
    assert all(e.startswith("event: chunk") or e.startswith("event: timestamps") for e in events[:-1])


async def test_credentials(gateway: Gateway) -> None:
    status, data, _ = await post(gateway, "/tts/bytes", json=body(), headers={"Cartesia-Version": "2026-03-01"})
    assert status == 401 and data["error_code"] == "invalid_api_key"
    status, data, _ = await post(gateway, "/tts/bytes", json=body(), headers={"X-API-Key": "revoked_secret"})
    assert status == 401 and "revoked_secret" not in str(data)
    status, data, _ = await post(gateway, "/tts/bytes", json=body(), headers={"Authorization": "Bearer gwt_forged"})
    assert status == 401
    for headers in ({"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}):
        status, data, ctype = await post(gateway, "/tts/bytes", json=body(), headers=headers)
        assert status == 200 and ctype == "audio/pcm"


async def test_stt_batch_bad_input(gateway: Gateway) -> None:
    form = aiohttp.FormData()
    form.add_field("model", "ink-whisper")
    status, data, _ = await post(gateway, "/stt", data=form)
    assert status == 400 and data["error_code"] == "invalid_request"  # no file
    form = aiohttp.FormData()
    form.add_field("file", b"\x01\x02 this is not audio at all" * 50, filename="a.wav", content_type="audio/wav")
    status, data, _ = await post(gateway, "/stt", data=form)
    assert status == 400 and data["error_code"] == "invalid_audio"
    form = aiohttp.FormData()
    form.add_field("file", wav_bytes("hi", 16000), filename="a.wav")
    status, data, _ = await post(gateway, "/stt?encoding=pcm_s24le&sample_rate=16000", data=form)
    assert status == 400 and data["error_code"] == "invalid_output_format"
    status, data, _ = await post(gateway, "/stt", json={"file": "x"})
    assert status == 400


async def test_raw_pcm_upload_with_declared_encoding(gateway: Gateway) -> None:
    form = aiohttp.FormData()
    form.add_field("file", speech("Hello world.", 8000), filename="a.raw", content_type="application/octet-stream")
    status, data, _ = await post(gateway, "/stt?encoding=pcm_s16le&sample_rate=8000", data=form)
    assert status == 200 and data["type"] == "transcript" and data["text"] == "Hello world."


async def test_voices_and_token_bad_input(gateway: Gateway) -> None:
    async with aiohttp.ClientSession(headers=H) as s:
        async with s.get(gateway.http + "/voices/nope") as r:
            assert r.status == 404 and (await r.json())["error_code"] == "not_found"
        for q in ("limit=0", "limit=1000", "starting_after=nope", "gender=robot"):
            async with s.get(gateway.http + "/voices?" + q) as r:
                assert r.status == 400, q
        async with s.get(gateway.http + "/voices?limit=3", headers={"Cartesia-Version": "2024-06-10"}) as r:
            assert isinstance(await r.json(), list)  # 2024-06-10: a bare array
        async with s.get(gateway.http + "/voices/?is_owner=true") as r:  # only the caller's own clones
            assert [v["is_owner"] for v in (await r.json())["data"]] == [True]
        for payload in ({"expires_in": 99999}, {"grants": "tts"}, {"expires_in": "soon"}):
            async with s.post(gateway.http + "/access-token", json=payload) as r:
                assert r.status == 400, payload
        async with s.post(gateway.http + "/access-token", data=b"[", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
        async with s.get(gateway.http + "/cartesia/") as r:
            assert (await r.json()) == {"ok": True, "version": "2026-03-01"}
    async with aiohttp.ClientSession() as s, s.get(gateway.http + "/voices") as r:
        assert r.status == 401 and (await r.json())["error_code"] == "invalid_api_key"


# -- TTS WebSocket ------------------------------------------------------------------------------------

async def test_ws_refuses_bad_credentials_before_upgrade(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        for url, headers in [(f"{gateway.ws}/tts/websocket", {}),
                             (f"{gateway.ws}/tts/websocket?access_token=forged", {}),
                             (f"{gateway.ws}/tts/websocket?access_token={KEY}", {}),  # a key is not a token
                             (f"{gateway.ws}/stt/websocket?encoding=pcm_s16le&sample_rate=16000", {})]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(url, headers=headers)
            assert e.value.status == 401
        # the SDK 2 style query credentials work
        async with s.ws_connect(f"{gateway.ws}/tts/websocket?api_key={KEY}&cartesia_version=2024-11-13") as ws:
            assert ws._response.headers.get("X-Request-Id")


async def test_ws_context_errors_keep_the_socket(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws:
        await ws.send_json({**body(context_id="a", transcript="A long first sentence keeps going.",
                                   **{"continue": True})})
        await ws.send_json({"context_id": "a", "cancel": True})
        await ws.send_json(body(context_id="a", transcript="For a cancelled context."))
        await ws.send_json(body(context_id="b", output_format={**RAW16, "container": "mp3"}))
        await ws.send_json(body(context_id="c", voice={"mode": "embedding", "embedding": [1.0]}))
        await ws.send_json(body(context_id="d", voice="not-a-voice"))
        await ws.send_json({"context_id": "e", "hello": "there"})
        await ws.send_json(body(context_id="ok", transcript="Still serving.", **{"continue": False}))
        errors: dict[str, dict[str, Any]] = {}
        audio = b""
        while True:
            msg = await ws.receive_json(timeout=15)
            assert "context_id" in msg  # on every message, errors included
            if msg["type"] == "error":
                assert msg["done"] is True and msg["status_code"] == 400 and msg["title"]
                errors[msg["context_id"]] = msg
            elif msg["context_id"] == "ok" and msg["type"] == "chunk":
                audio += base64.b64decode(msg["data"])
            elif msg["context_id"] == "ok" and msg["type"] == "done":
                break
            else:
                assert msg["context_id"] == "a" and msg["type"] in ("chunk", "timestamps")  # before the cancel
        assert set(errors) == {"a", "b", "c", "d", "e"}
        assert "cancelled" in errors["a"]["message"]
        assert errors["b"]["error_code"] == "invalid_output_format"
        assert "embedding" in errors["c"]["message"]
        assert errors["d"]["error_code"] == "voice_not_found"
        assert errors["e"]["error_code"] == "invalid_request"
        assert words(np.frombuffer(audio, "<i2"), 16000) == expected_words("Still serving.")
        assert not ws.closed


async def test_ws_gradium_rejecting_a_context(gateway: Gateway) -> None:
    # a Gradium-style id passes the voice table, and Gradium itself refuses it: the error names the
    # context; Gradium's socket is gone (it fails every request on it), the next context gets a new one
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws:
        await ws.send_json(body(context_id="bad", voice="AAAAAAAAAAAAAAAA", **{"continue": False}))
        msg = await ws.receive_json(timeout=10)
        assert msg["type"] == "error" and msg["context_id"] == "bad" and msg["error_code"] == "voice_not_found"
        await ws.send_json(body(context_id="good", **{"continue": False}))
        msgs = await read_until_done(ws, {"good"})
        assert msgs["good"][-1]["type"] == "done" and msgs["good"][0]["type"] == "chunk"


async def test_ws_legacy_error_shape_and_socket_level_errors(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{gateway.ws}/tts/websocket?cartesia_version=2024-11-13", headers=H) as ws:
            await ws.send_json(body(context_id="x", voice="nope"))
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and msg["error"].startswith("Voice not found: ") and msg["code"] == 400
            await ws.send_str("{not json")  # no context to blame: an error, then the socket closes
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and "context_id" not in msg
            assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
        async with s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws:
            await ws.send_bytes(b"\x00\x01")
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and msg["error_code"] == "invalid_request"


async def test_ws_buffer_delay_flushes_a_pending_word(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws:
        # "Hello" without a trailing space could still be the start of a longer word: it waits, but no
        # longer than max_buffer_delay_ms; the context stays open (continue: true)
        await ws.send_json(body(context_id="p", transcript="Hello", max_buffer_delay_ms=100, **{"continue": True}))
        msg = await ws.receive_json(timeout=10)
        assert msg["type"] == "chunk" and msg["context_id"] == "p"
        await ws.send_json(body(context_id="p", transcript="", **{"continue": False}))
        msgs = await read_until_done(ws, {"p"})
        assert msgs["p"][-1]["type"] == "done"


async def test_ws_long_flushed_segments_on_one_upstream_socket(gateway: Gateway) -> None:
    # Two long segments of one context (a flush between them) plus another context, all multiplexed on
    # one Gradium socket: the second segment waits its turn without stalling the shared socket.
    long_a = " ".join(["Segment one keeps talking for a while."] * 40)
    long_b = " ".join(["Segment two follows after the flush."] * 40)
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws:
        await ws.send_json(body(context_id="L", transcript=long_a, flush=True, **{"continue": True}))
        await ws.send_json(body(context_id="L", transcript=long_b, **{"continue": False}))
        await ws.send_json(body(context_id="M", transcript="Meanwhile.", **{"continue": False}))
        msgs = await asyncio.wait_for(read_until_done(ws, {"L", "M"}), 60)
    kinds = [(m["type"], m.get("flush_id")) for m in msgs["L"] if m["type"] != "timestamps"]
    i = kinds.index(("flush_done", 1))
    assert {k for k in kinds[:i]} == {("chunk", 1)} and {k for k in kinds[i + 1 : -1]} == {("chunk", 2)}
    assert kinds[-1] == ("done", None)
    assert len(gateway.emulator.app[STATS].setups) == 3  # three Gradium requests...
    assert gateway.emulator.app[STATS].ws_connections == 1  # ...on one Gradium socket


async def test_clients_vanishing_mid_stream_and_others_still_served(gateway: Gateway) -> None:
    long_text = " ".join(["A client that disappears mid stream."] * 30)
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H)
        await ws.send_json(body(context_id="gone", transcript=long_text, **{"continue": False}))
        await ws.receive_json(timeout=10)  # audio is flowing
        ws._response.connection.transport.abort()  # vanish without a close frame
        stt = await s.ws_connect(f"{gateway.ws}/stt/websocket?encoding=pcm_s16le&sample_rate=16000", headers=H)
        await stt.send_bytes(speech("Hello world.", 16000)[:16000])
        stt._response.connection.transport.abort()
        async with s.post(f"{gateway.http}/tts/sse", headers=H, json=body(transcript=long_text)) as r:
            assert r.status == 200
            await r.content.readline()
            r.connection.transport.abort()  # type: ignore[union-attr]
        # upstream sessions are released (bounded wait), and a new client is served as usual
        await assert_upstream_released(gateway)
        async with s.ws_connect(f"{gateway.ws}/tts/websocket", headers=H) as ws2:
            await ws2.send_json(body(context_id="next", transcript="Still here.", **{"continue": False}))
            msgs = await read_until_done(ws2, {"next"})
        audio = b"".join(base64.b64decode(m["data"]) for m in msgs["next"] if m["type"] == "chunk")
        assert words(np.frombuffer(audio, "<i2"), 16000) == expected_words("Still here.")


# -- STT WebSockets -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "query",
    [
        "encoding=pcm_s24le&sample_rate=16000",  # wrong (unsupported) audio encoding
        "encoding=opus&sample_rate=16000",
        "sample_rate=16000",  # no encoding
        "encoding=pcm_s16le",  # no rate
        "encoding=pcm_s16le&sample_rate=abc",
    ],
)
async def test_stt_ws_bad_audio_parameters_refused(gateway: Gateway, query: str) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/stt/websocket", "/stt/turns/websocket"):
            async with s.get(f"{gateway.http}{path}?{query}", headers=H) as r:
                assert r.status == 400
                assert (await r.json())["error_code"] in ("invalid_output_format", "invalid_request")


async def test_stt_ws_commands(gateway: Gateway) -> None:
    url = f"{gateway.ws}/stt/websocket?encoding=pcm_s16le&sample_rate=16000&model=ink-whisper"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, headers=H) as ws:
            await ws.send_str("finalize")  # nothing said yet: just the ack
            assert (await ws.receive_json(timeout=10))["type"] == "flush_done"
            await ws.send_str("done")  # Pipecat's spelling of `close`
            assert (await ws.receive_json(timeout=10))["type"] == "done"
            closing = await ws.receive(timeout=10)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
        async with s.ws_connect(url, headers=H) as ws:
            await ws.send_str("rewind")
            msg = await ws.receive_json(timeout=10)
            assert msg["type"] == "error" and msg["error_code"] == "invalid_request"
            assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
    turns = f"{gateway.ws}/stt/turns/websocket?encoding=pcm_s16le&sample_rate=16000&model=ink-2"
    async with aiohttp.ClientSession() as s, s.ws_connect(turns, headers=H) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "connected"
        await ws.send_json({"type": "config", "turn": {"end_threshold": 0.9}})  # out of range
        msg = await ws.receive_json(timeout=10)
        assert msg["type"] == "error" and msg["title"]
        await ws.send_json({"type": "config", "turn": {"end_threshold": 0.3, "end_timeout_ms": 1000}})
        await ws.send_bytes(speech("Hello world.", 16000) + bytes(32000))
        await ws.send_json({"type": "close"})
        seen = []
        while True:
            m = await ws.receive(timeout=15)
            if m.type != aiohttp.WSMsgType.TEXT:
                break
            seen.append(m.json()["type"])
        assert seen[0] == "turn.start" and "turn.end" in seen
