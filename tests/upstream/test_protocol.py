"""Gradium's vocabulary (`gateway/upstream/protocol.py`): the wire shapes of specs/gradium.md, the
readers' leniency, and the client reading through it."""

from __future__ import annotations

import ast
import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.errors import GatewayError
from gateway.upstream import protocol as gradium
from gateway.upstream.gradium import GradiumClient, GradiumStream
from gateway.upstream.mux import GradiumMux


def wire(msg: gradium.Message) -> dict[str, object]:
    return orjson.loads(gradium.dumps(msg))


def test_client_messages_have_the_documented_shapes() -> None:
    assert wire(gradium.setup({"voice_id": "v", "output_format": "pcm"})) == {
        "type": "setup", "voice_id": "v", "output_format": "pcm"}
    assert wire(gradium.setup({"input_format": "pcm"}, close_ws_on_eos=False)) == {
        "type": "setup", "input_format": "pcm", "close_ws_on_eos": False}
    assert wire(gradium.text("Hello,")) == {"type": "text", "text": "Hello,"}
    assert wire(gradium.text_flush("the rest")) == {"type": "text", "text": "the rest <flush>"}
    assert wire(gradium.text_flush(None)) == {"type": "text", "text": "<flush>"}
    assert wire(gradium.audio(b"\x01\x02\x03")) == {"type": "audio", "audio": "AQID"}
    assert wire(gradium.flush(3)) == {"type": "flush", "flush_id": 3}
    assert wire(gradium.flush("eot-1")) == {"type": "flush", "flush_id": "eot-1"}
    assert wire(gradium.end_of_stream()) == {"type": "end_of_stream"}
    assert wire(gradium.end_of_stream("r2")) == {"type": "end_of_stream", "client_req_id": "r2"}
    assert wire(gradium.rest_tts({"voice_id": "v"}, "Hi")) == {"voice_id": "v", "text": "Hi", "only_audio": False}


def test_gradium_messages_have_the_documented_shapes() -> None:
    # audio may stay bytes until it goes on a JSON wire, where it is base64
    assert wire(gradium.timed_audio(b"\x00\x01", 0.08, 0.16000001)) == {
        "type": "audio", "audio": "AAE=", "start_s": 0.08, "stop_s": 0.16, "stream_id": 0}
    assert gradium.dumps_line(gradium.timed_audio(b"\x00", 0, 0)).endswith(b"}\n")
    assert wire(gradium.timed_text("Hello", 0.5, 0.9)) == {
        "type": "text", "text": "Hello", "start_s": 0.5, "stop_s": 0.9, "stream_id": 0}
    assert wire(gradium.timed_text("hello", 0.5)) == {"type": "text", "text": "hello", "start_s": 0.5, "stream_id": 0}
    assert wire(gradium.end_text(2.5)) == {"type": "end_text", "stop_s": 2.5, "stream_id": 0}
    vad = [{"horizon_s": h, "inactivity_prob": 0.1} for h in (0.5, 1.0, 2.0)]
    assert wire(gradium.step(vad, 4, 0.08, 0.4)) == {
        "type": "step", "vad": vad, "step_idx": 4, "step_duration_s": 0.08, "total_duration_s": 0.4}
    assert wire(gradium.flushed()) == {"type": "flushed"}
    assert wire(gradium.flushed("1")) == {"type": "flushed", "flush_id": "1"}  # echoed as sent
    assert wire(gradium.flushed(None)) == {"type": "flushed", "flush_id": None}
    assert wire(gradium.error(1008, "API key is revoked or expired")) == {
        "type": "error", "message": "API key is revoked or expired", "code": 1008}
    assert wire(gradium.error(1002, "x", "r1"))["client_req_id"] == "r1"


def test_reading() -> None:
    msg = gradium.parse(b'{"type":"audio","audio":"AQID","start_s":0.1}')
    assert gradium.audio_bytes(msg) == b"\x01\x02\x03"
    assert gradium.audio_bytes({"type": "audio"}) == b"" == gradium.audio_bytes({"type": "audio", "audio": None})
    with pytest.raises(gradium.NotJson):
        gradium.parse("{nope")
    with pytest.raises(gradium.Malformed) as info:
        gradium.parse("[1, 2]")
    assert not isinstance(info.value, gradium.NotJson)
    assert gradium.error_of({"type": "error", "message": "busy", "code": 1008}) == (1008, "busy")
    assert gradium.error_of({"type": "error", "code": "1008"}) == (None, "")


def test_step_inactivity_at_the_nearest_horizon() -> None:
    def step(*horizons: tuple[float, float]) -> gradium.Message:
        return gradium.step([{"horizon_s": h, "inactivity_prob": p} for h, p in horizons], 0, 0.08, 0.08)

    at_half, at_2_4 = gradium.Inactivity(0.5), gradium.Inactivity(2.4)
    assert at_half(step((0.5, 0.2), (1.0, 0.5), (3.0, 0.9))) == 0.2
    assert at_2_4(step((0.5, 0.2), (1.0, 0.5), (3.0, 0.9))) == 0.9
    assert at_2_4(step((0.5, 0.3), (1.0, 0.6), (3.0, 0.7))) == 0.7  # the same horizons: the index found before
    assert at_2_4(step((2.0, 0.4), (4.0, 0.8))) == 0.4  # other horizons: looked for again
    assert at_2_4(step((0.5, 0.1))) == 0.1  # fewer of them
    assert at_half({"type": "step"}) is None
    assert at_half({"type": "step", "vad": []}) is None
    assert gradium.Inactivity(0.5)({"type": "step", "vad": ["junk"]}) is None  # never a crash on Gradium's input
    assert gradium.Inactivity(0.5)({"type": "step", "vad": [{"horizon_s": "x"}]}) is None


def test_the_client_notes_ready_and_end_and_raises_errors() -> None:
    stream = GradiumStream()
    stream._note(gradium.parse('{"type":"ready","request_id":"req_1"}'))
    assert stream.request_id == "req_1" and not stream.ended
    stream._note(gradium.end_of_stream())
    assert stream.ended
    with pytest.raises(GatewayError) as info:
        stream._note(gradium.parse(gradium.dumps(gradium.error(1008, "API key is revoked or expired"))))
    assert info.value.kind == "unauthorized" and info.value.upstream_code == 1008


async def test_a_malformed_frame_is_an_upstream_error_on_every_transport(aiohttp_server: Any) -> None:
    """WS, REST NDJSON and the shared (mux) socket all read Gradium through `protocol.parse`."""

    async def ws_route(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the setup
        await ws.send_str("[1, 2]")
        await ws.receive()
        return ws

    async def rest_route(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type": "ready"}\n{not json\n')
        return resp

    app = web.Application()
    app.router.add_get("/api/speech/tts", ws_route)
    app.router.add_post("/api/post/speech/tts", rest_route)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        client = GradiumClient(session, str(server.make_url("/api/")))
        ws = await client.open_ws("tts", {}, "gsk_test")
        rest = await client.post("tts", "gsk_test", json=gradium.rest_tts({}, "hi"))
        assert (await rest.recv()) == {"type": "ready"}
        mux = GradiumMux(client, "tts", "gsk_test")
        shared = await mux.open({})
        for stream in (ws, rest, shared):
            with pytest.raises(GatewayError) as info:
                await asyncio.wait_for(stream.recv(), 10)  # a frame skipped would hang here: fail instead
            assert (info.value.kind, info.value.message) == ("upstream_error", "Gradium sent a malformed message")
            await stream.close()
        await mux.close()
        await client.close_idle()


def test_audio_survives_the_round_trip() -> None:
    pcm = bytes(range(256)) * 15
    assert gradium.audio_bytes(gradium.parse(gradium.dumps(gradium.audio(pcm)))) == pcm
    assert base64.b64decode(wire(gradium.timed_audio(pcm, 0, 0.08))["audio"]) == pcm  # type: ignore[arg-type]


def test_the_vocabulary_imports_nothing_of_the_gateway() -> None:
    """The emulator and every layer of the gateway import it; it must not import them back."""
    tree = ast.parse(Path(gradium.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names == {"__future__", "base64", "binascii", "typing", "orjson", "pybase64"}
