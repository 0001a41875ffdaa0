"""Frames handled where aiohttp parses them (`gateway/wsinbox.py`): in order, whatever a sink leaves for the
reading task, and a live STT session's audio and words intact when Gradium's socket asks the gateway to wait
(the frames then go through the tasks) or when aiohttp's queue cannot be replaced."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.emulator.stats import STATS
from gateway.session.port import AiohttpPort
from gateway.upstream.wsstream import GradiumWsStream
from gateway.wsframe import FrameWriter
from gateway.wsinbox import InboxResponse, Later, attach_client, later_message, raising
from tests.audiocheck import expected_words, speech
from tests.conftest import Gateway, run_app

TEXT = "one two three four"
DG_URL = "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"


@contextlib.asynccontextmanager
async def _server(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/", handler)
    async with run_app(app) as (port, _):
        yield f"http://127.0.0.1:{port}/"


async def test_a_sink_takes_messages_in_order_and_what_it_leaves_comes_first() -> None:
    """Messages the sink takes never reach `receive`; after one it leaves work for (a marker), every later
    message waits in the queue behind that work, whatever the sink would have done with it."""
    order: list[str] = []
    release = asyncio.Event()
    done = asyncio.Event()

    async def slow(name: str) -> None:
        await release.wait()
        order.append(f"later:{name}")

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = InboxResponse()
        await ws.prepare(request)
        inbox = ws.inbox
        assert inbox is not None

        def sink(msg: Any) -> Any:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                inbox.sink = None
                return msg
            if msg.data == "wait":
                inbox.sink = None
                return later_message(slow(msg.data))
            if msg.data == "boom":
                inbox.sink = None
                return later_message(raising(ValueError("boom")))
            order.append(f"sink:{msg.data}")
            return None

        while True:
            inbox.listen(sink, contextvars.copy_context())
            msg = await ws.receive()
            inbox.sink = None
            if msg.data.__class__ is Later:
                try:
                    await msg.data
                except ValueError as exc:
                    order.append(f"raised:{exc}")
                continue
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            order.append(f"task:{msg.data}")
        done.set()
        return ws

    async with _server(handler) as url:
        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            for m in ("a", "b", "wait", "c", "d"):
                await ws.send_str(m)
            while len(order) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # c and d are in by now (loopback)
            assert order == ["sink:a", "sink:b"]  # c and d queued behind the work left for "wait"
            release.set()
            while "task:d" not in order:
                await asyncio.sleep(0.01)
            await ws.send_str("e")  # the reader waits again with nothing queued: the sink takes it
            await ws.send_str("boom")
            await ws.send_str("f")
            while "task:f" not in order:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(done.wait(), 5)
    assert order == ["sink:a", "sink:b", "later:wait", "task:c", "task:d", "sink:e", "raised:boom", "task:f"]


async def test_a_marker_left_by_a_pooled_sockets_last_user_is_skipped() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # as Gradium, nothing before the client's first message
        await ws.send_str('{"type":"step","total_duration_s":0.08}')
        await ws.receive()
        return ws

    ran: list[str] = []

    async def work() -> None:
        ran.append("ran")

    async with _server(handler) as url, aiohttp.ClientSession() as s, \
            s.ws_connect(url, compress=0, decode_text=False) as ws:
        inbox = attach_client(ws, 2**20, decode_text=False)
        assert inbox is not None
        earlier, now = GradiumWsStream(ws), GradiumWsStream(ws)
        inbox.feed_data(later_message(work(), earlier), 0)  # what a sink of the last request left
        await ws.send_str("go")
        assert await now.recv() == {"type": "step", "total_duration_s": 0.08}
    assert ran == []


class _Slow:
    """Every other frame written, the transport asks the gateway to wait (its drain), briefly."""

    def __init__(self) -> None:
        self.n = 0
        self.waits = 0

    def after(self, sent: Any) -> Any:
        self.n += 1
        if sent is not True or self.n % 2:
            return sent
        self.waits += 1
        return asyncio.sleep(0.001)

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("write_masked_text", "write", "send"):
            real = getattr(FrameWriter, name)
            monkeypatch.setattr(FrameWriter, name, lambda fw, *a, real=real, **k: self.after(real(fw, *a, **k)))


async def _dg_session(gateway: Gateway) -> list[dict[str, Any]]:
    audio = speech(TEXT, 16000)
    out: list[dict[str, Any]] = []  # every message the client got
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws + DG_URL,
                                                          protocols=("token", "gsk_test")) as ws:
        for i in range(0, len(audio), 2560):
            await ws.send_bytes(audio[i:i + 2560])
            await asyncio.sleep(0)
        await ws.send_str('{"type": "CloseStream"}')
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                out.append(orjson.loads(msg.data))
    return out


def _final_words(out: list[dict[str, Any]]) -> list[str]:
    return [w["word"] for m in out if m.get("type") == "Results" and m["is_final"]
            for w in m["channel"]["alternatives"][0]["words"]]


@pytest.mark.parametrize("how", ["inline", "gradium_waits", "aiohttp_queues"])
async def test_a_live_session_keeps_every_frame_in_order(gateway: Gateway, monkeypatch: pytest.MonkeyPatch,
                                                         how: str) -> None:
    slow = _Slow()
    if how == "gradium_waits":  # writes to Gradium and to the client wait now and then: the tasks take over
        slow.patch(monkeypatch)
    elif how == "aiohttp_queues":  # no inbox on either socket: every frame through `receive`, as before
        monkeypatch.setattr(InboxResponse, "_post_start", web.WebSocketResponse._post_start)
        monkeypatch.setattr("gateway.upstream.gradium.attach_client", lambda *a, **k: None)
    seen: list[Any] = []
    real_init = AiohttpPort.__init__

    def spy(self: AiohttpPort, ws: Any) -> None:
        real_init(self, ws)
        seen.append(self.inbox)

    monkeypatch.setattr(AiohttpPort, "__init__", spy)
    audio = speech(TEXT, 16000)
    out = await _dg_session(gateway)
    assert _final_words(out) == [w.strip(".?") for w in expected_words(TEXT)]  # Gradium heard it all, in order
    assert out[-1]["type"] == "Metadata" and out[-1]["sha256"] == hashlib.sha256(audio).hexdigest()
    assert gateway.emulator.app[STATS].messages_in >= len(audio) // 2560 + 2  # setup, every chunk, the end
    assert (seen[0] is None) == (how == "aiohttp_queues")
    if how == "gradium_waits":
        assert slow.waits > 5
