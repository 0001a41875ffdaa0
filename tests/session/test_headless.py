"""Whole sessions through the capture port, with no client socket (the API shadow legs use), checked
frame by frame against the same session over a real client socket."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import orjson

from gateway.session.headless import HeadlessSession
from gateway.session.port import CapturePort
from tests.audiocheck import decode, expected_words, speech, words
from tests.conftest import Gateway, assert_upstream_released

VOICE = "21m00Tcm4TlvDq8ikWAM"
KEY = "gsk_test"


def normal(value: Any) -> Any:
    """Frames with the per-session ids and clocks blanked (they differ between two runs, nothing else may)."""
    if isinstance(value, dict):
        return {k: "*" if k in ("request_id", "created") else normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


async def over_socket(gw: Gateway, path: str, frames: list[Any], headers: dict[str, str]) -> tuple[list[Any], int]:
    got: list[Any] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(gw.ws + path, headers=headers) as ws:
        for f in frames:
            if isinstance(f, bytes):
                await ws.send_bytes(f)
            else:
                await ws.send_str(orjson.dumps(f).decode())
        async for msg in ws:
            got.append(orjson.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else msg.data)
    assert ws.close_code is not None
    return got, ws.close_code


async def headless(gw: Gateway, provider: str, route: str, frames: list[Any], **request: Any) -> tuple[list[Any], int]:
    async with HeadlessSession(gw.app, provider, route, **request) as s:
        for f in frames:
            if isinstance(f, bytes):
                await s.send_bytes(f)
            else:
                await s.send_json(f)
        end = await s.wait(timeout=20)
    port = s.port
    assert end.close_code == port.close_code and end.flow.headless
    return [orjson.loads(f.data) if f.is_text else f.data for f in port.frames], port.close_code or 0


def per_context(msgs: list[Any], key: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in msgs:
        out.setdefault(m.get(key), []).append(m)
    return out


async def test_elevenlabs_multi_context_headless(gateway: Gateway) -> None:
    frames = [
        {"text": " ", "context_id": "a", "xi_api_key": KEY},
        {"text": "Alpha speaks ", "context_id": "a"},
        {"text": "Bravo talks ", "context_id": "b"},
        {"context_id": "a", "flush": True},
        {"context_id": "a", "close_context": True},
        {"context_id": "b", "close_context": True},
        {"close_socket": True},
    ]
    path = {"voice_id": VOICE}
    query = {"output_format": "pcm_16000", "sync_alignment": "true"}
    got, close = await headless(gateway, "elevenlabs", "tts_multi_stream_input", frames, path=path, query=query)
    assert close == 1000
    finals = [m for m in got if m.get("isFinal")]
    assert sorted(m["contextId"] for m in finals) == ["a", "b"]
    assert finals[0] == {"isFinal": True, "is_final": True, "contextId": finals[0]["contextId"],
                         "context_id": finals[0]["contextId"]}
    for ctx, text in (("a", "Alpha speaks"), ("b", "Bravo talks")):
        pcm = b"".join(base64.b64decode(m["audio"]) for m in got if m.get("contextId") == ctx and m.get("audio"))
        assert words(decode(pcm, "s16le", 16000).pcm, 16000) == expected_words(text)
    # the same session over a socket gives the same frames, context by context
    sock, sock_close = await over_socket(
        gateway, f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_16000&sync_alignment=true",
        frames, {})
    assert sock_close == close
    assert per_context(normal(got), "contextId") == per_context(normal(sock), "contextId")
    await assert_upstream_released(gateway)


async def test_cartesia_tts_flush_and_cancel_headless(gateway: Gateway) -> None:
    gen = {"model_id": "sonic-2", "voice": {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
           "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}}
    frames = [
        {**gen, "context_id": "one", "transcript": "Hello there ", "continue": True, "flush": True},
        {**gen, "context_id": "one", "transcript": "and goodbye", "continue": False},
        {**gen, "context_id": "two", "transcript": "never mind ", "continue": True, "max_buffer_delay_ms": 60000},
        {"context_id": "two", "cancel": True},
        {**gen, "context_id": "two", "transcript": "again", "continue": False},
    ]
    query = {"cartesia_version": "2025-04-16", "api_key": KEY}
    async with HeadlessSession(gateway.app, "cartesia", "tts_websocket", query=query) as s:
        for f in frames:
            await s.send_json(f)
        for _ in range(500):
            got = s.port.json()
            if sum(m.get("type") == "done" for m in got) and any(m.get("type") == "error" for m in got):
                break
            await asyncio.sleep(0.01)
        await s.close()
        end = await s.wait(timeout=10)
    assert end.status == "client_gone"
    got = s.port.json()
    one = [m for m in got if m.get("context_id") == "one"]
    kinds = [m["type"] for m in one]
    assert kinds.index("flush_done") < kinds.index("done") and kinds[-1] == "done"
    assert [m for m in one if m["type"] == "flush_done"] == [
        {"type": "flush_done", "context_id": "one", "done": False, "flush_done": True, "flush_id": 1,
         "status_code": 206}]
    pcm = b"".join(base64.b64decode(m["data"]) for m in one if m["type"] == "chunk")
    assert words(decode(pcm, "s16le", 16000).pcm, 16000) == expected_words("Hello there and goodbye")
    two = [m for m in got if m.get("context_id") == "two"]
    assert not any(m["type"] in ("chunk", "done") for m in two)  # cancelled before any audio was due
    assert two[-1]["type"] == "error" and "cancelled" in two[-1]["error"]
    await assert_upstream_released(gateway)


async def test_deepgram_live_finalize_headless(gateway: Gateway) -> None:
    audio = speech("hello world", 16000)
    frames: list[Any] = [audio[i:i + 3200] for i in range(0, len(audio), 3200)]
    frames += [{"type": "Finalize"}, {"type": "CloseStream"}]
    query = {"encoding": "linear16", "sample_rate": "16000"}
    got, close = await headless(gateway, "deepgram", "listen_live", frames, query=query,
                                header={"Authorization": f"Token {KEY}"})
    assert close == 1000
    results = [m for m in got if m["type"] == "Results"]
    assert [r["from_finalize"] for r in results][-1] is True
    assert " ".join(r["channel"]["alternatives"][0]["transcript"] for r in results if r["is_final"]).split() == \
        expected_words("hello world")
    assert got[-1]["type"] == "Metadata" and got[-1]["channels"] == 1
    sock, sock_close = await over_socket(gateway, "/v1/listen?encoding=linear16&sample_rate=16000", frames,
                                         {"Authorization": f"Token {KEY}"})
    assert (normal(got), close) == (normal(sock), sock_close)
    await assert_upstream_released(gateway)


async def test_headless_refusal_is_captured(gateway: Gateway) -> None:
    port = CapturePort()
    async with HeadlessSession(gateway.app, "deepgram", "listen_live", query={"encoding": "nope"},
                               header={"Authorization": f"Token {KEY}"}, port=port) as s:
        end = await s.wait(timeout=10)
    assert port.refusal is not None and port.refusal.status == 400 and end.http_status == 400
    assert "dg-error" in {k.lower() for k in port.refusal.headers}
