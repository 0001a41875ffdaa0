"""Issue 9: the end of a session reaches the client first. Once a request is over, its final message and
the socket's close go to the client without waiting for the finished Gradium stream to be released (a
socket's return to the pool, or its close handshake with Gradium); the session itself still ends only
after that release. And what a session leaves is freed when it ends, not by the garbage collector."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from gateway.session.contexts import Request
from gateway.session.core import SessionCore
from gateway.session.driver import Driver
from gateway.session.headless import HeadlessSession
from gateway.session.port import CapturePort
from gateway.session.upstreams import RequestIO, Upstreams
from gateway.upstream.gradium import GradiumWsStream
from tests.conftest import Gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"
KEY = "gsk_test"


async def test_the_client_is_closed_before_the_gradium_stream_is_released(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    releasing = asyncio.Event()
    release = asyncio.Event()
    real_close = GradiumWsStream.close

    async def held_close(self: GradiumWsStream) -> None:
        releasing.set()
        await release.wait()  # Gradium slow to answer the close (or the pool return held up)
        await real_close(self)

    monkeypatch.setattr(GradiumWsStream, "close", held_close)
    # a release that takes I/O (a pool return takes none: `close_now` does it without a task)
    monkeypatch.setattr(GradiumWsStream, "close_now", lambda self: False)
    async with HeadlessSession(gateway.app, "elevenlabs", "tts_stream_input", path={"voice_id": VOICE},
                               query={"output_format": "pcm_16000"}) as s:
        for frame in ({"text": " ", "xi_api_key": KEY}, {"text": "Hello world. "}, {"text": ""}):
            await s.send_json(frame)
        try:
            await asyncio.wait_for(releasing.wait(), 20)  # a guard against a hang, not a timing
            for _ in range(50):  # a few loop turns: the close is not waiting on anything
                if s.port.closed:
                    break
                await asyncio.sleep(0)
            close_code = s.port.close_code  # what the client has while Gradium's stream is still held
            frames: list[Any] = s.port.json()
            ended_early = s.task is None or s.task.done()
        finally:
            release.set()
        end = await s.wait(timeout=20)
    assert close_code == 1000 and frames[-1] == {"isFinal": True}
    assert any(f.get("audio") for f in frames)
    assert not ended_early  # the session itself ends only once the stream is released
    assert end.status == "ok" and end.close_code == 1000


async def test_a_finished_session_is_freed_without_the_garbage_collector(gateway: Gateway) -> None:
    """No reference cycle ties a session's driver, core, requests and sockets together: they go when the
    session ends, not at the collector's next pass (which, with a cycle per session, came every dozen sessions
    and took up to a millisecond, in the middle of whatever session was running then)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable stays in gc.garbage to be looked at
    try:
        for _ in range(2):
            async with HeadlessSession(gateway.app, "elevenlabs", "tts_stream_input", path={"voice_id": VOICE},
                                       query={"output_format": "pcm_16000"}) as s:
                for frame in ({"text": " ", "xi_api_key": KEY}, {"text": "Hello world. "}, {"text": ""}):
                    await s.send_json(frame)
                end = await s.wait(timeout=20)
                assert end.status == "ok"
        gc.collect()
        session_kinds = (Driver, Upstreams, RequestIO, SessionCore, Request, CapturePort)
        left = sorted({type(o).__name__ for o in gc.garbage if isinstance(o, session_kinds)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
