"""A session leaves no asyncio task behind: when it has ended, none of its tasks is still pending, and
none ended with an exception nobody read ("Task was destroyed but it is pending", "Task exception was
never retrieved"), whether it ended normally, the client vanished mid-stream, or Gradium failed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import CIMultiDict, MultiDict

from gateway.dialects.common import MAPPINGS, RequestContext
from gateway.emulator.faults import FAULTS
from gateway.events import Flow
from gateway.mapping.params import RequestData
from gateway.session.handler import run_ws
from gateway.session.headless import HeadlessSession
from gateway.session.upstreams import RequestIO, Upstreams
from tests.conftest import Gateway, assert_upstream_released

VOICE = "21m00Tcm4TlvDq8ikWAM"
KEY = "gsk_test"
LONG = "The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun. " * 2
# the names the session driver gives its tasks (readers, timed flushes, warm-up, shared socket reader...)
SESSION_TASKS = ("context:", "timed-flush", "warm-up", "gradium-mux", "client", "watchdog", "headless:")


@contextlib.contextmanager
def loop_reports() -> Iterator[list[str]]:
    """What asyncio reports through the loop's exception handler meanwhile (destroyed or unread tasks)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(f"{ctx.get('message')}: {ctx.get('task') or ''}"))
    try:
        yield seen
    finally:
        loop.set_exception_handler(old)


async def assert_nothing_left(seen: list[str]) -> None:
    for _ in range(3):  # a cancelled future finishes on the loop's next turn
        await asyncio.sleep(0)
    me = asyncio.current_task()
    pending = [t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done()
               and t.get_name().startswith(SESSION_TASKS)]
    assert pending == []
    gc.collect()  # a pending task nobody holds, an unread exception, an unclosed socket: reported when collected
    assert seen == []


async def multi_context(gateway: Gateway, frames: list[dict[str, Any]], *, close_after_audio: bool = False) -> Any:
    path = {"voice_id": VOICE}
    async with HeadlessSession(gateway.app, "elevenlabs", "tts_multi_stream_input", path=path,
                               query={"output_format": "pcm_16000"}) as s:
        for f in frames:
            await s.send_json(f)
        if close_after_audio:
            for _ in range(1000):
                if any(m.get("audio") for m in s.port.json()):
                    break
                await asyncio.sleep(0.005)
            await s.close()  # the client goes away while its audio is still coming
        return await s.wait(timeout=20)


FRAMES = [
    {"text": " ", "context_id": "a", "xi_api_key": KEY},
    {"text": LONG, "context_id": "a"},
    {"context_id": "a", "flush": True},
    {"text": "And again. ", "context_id": "a"},  # a second request under `a`: it waits its turn
    {"text": "Bravo talks. ", "context_id": "b"},
    {"context_id": "a", "close_context": True},
    {"context_id": "b", "close_context": True},
]


async def test_normal_end_leaves_nothing(gateway: Gateway) -> None:
    with loop_reports() as seen:
        end = await multi_context(gateway, [*FRAMES, {"close_socket": True}])
        assert (end.status, end.close_code) == ("ok", 1000)
        await assert_nothing_left(seen)
    await assert_upstream_released(gateway)


async def test_client_gone_mid_stream_leaves_nothing(gateway: Gateway) -> None:
    gateway.emulator.app[FAULTS].update({"frame_delay_s": 0.01})
    with loop_reports() as seen:
        end = await multi_context(gateway, FRAMES, close_after_audio=True)
        assert end.status == "client_gone"
        await assert_nothing_left(seen)
    await assert_upstream_released(gateway)


@pytest.mark.parametrize("fault", [{"drop_after_messages": 6}, {"error_after_messages": 6}])
async def test_gradium_failure_leaves_nothing(gateway: Gateway, fault: dict[str, Any]) -> None:
    gateway.emulator.app[FAULTS].update(fault)
    with loop_reports() as seen:
        end = await multi_context(gateway, [*FRAMES, {"close_socket": True}])
        assert end.status != "ok" or end.close_code != 1000 or end.kind is not None
        # one Gradium socket per request (stream-input) fails the same way
        async with HeadlessSession(gateway.app, "elevenlabs", "tts_stream_input", path={"voice_id": VOICE},
                                   query={"output_format": "pcm_16000"}, header={"xi-api-key": KEY}) as s:
            for f in ({"text": " "}, {"text": LONG}, {"text": ""}):
                await s.send_json(f)
            end = await s.wait(timeout=20)
        assert end.close_code == 1011
        await assert_nothing_left(seen)
    await assert_upstream_released(gateway)


async def test_client_gone_during_the_upgrade_leaves_nothing(gateway: Gateway) -> None:
    """Deepgram refuses with an HTTP status, so its Gradium request opens before the upgrade: a client
    that leaves during the upgrade must not leave that socket open (nor wait for the collector to close it)."""
    mapping = gateway.app[MAPPINGS]["deepgram"]
    req = RequestData(path={}, query=MultiDict({"encoding": "linear16", "sample_rate": "16000"}),
                      header=CIMultiDict({"Authorization": f"Token {KEY}"}))

    async def accept() -> Any:
        raise ConnectionResetError("the client left")

    with loop_reports() as seen:
        with pytest.raises(ConnectionResetError):
            await run_ws(gateway.app, RequestContext(mapping, mapping.routes["listen_live"]), req,
                         Flow("deepgram", "listen_live", "ws"), accept, lambda refusal: None)
        await assert_nothing_left(seen)
    await assert_upstream_released(gateway)


class StubStream:
    """A Gradium stream fed by the test."""

    request_id = None

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def recv(self) -> Any:
        return await self.inbox.get()

    async def send(self, msg: Any) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_reader_cancelled_as_its_first_message_arrives_stops() -> None:
    """The cancellation must win: a reader that swallowed it (3.11's `wait_for` does, when the awaited
    result lands in the same turn) would wait on a closed stream for ever, then be destroyed pending."""

    async def nothing(*args: Any) -> None:
        pass

    ups = Upstreams(None, "tts", False, 5.0, render=lambda r, events: [], run=nothing,  # type: ignore[arg-type]
                    feed=nothing, abort=lambda exc: None)
    stream = StubStream()
    r = SimpleNamespace(key="a", io=RequestIO(stream),  # type: ignore[arg-type]
                        plan=SimpleNamespace(transform=SimpleNamespace(heavy=False, on_gradium=lambda msg: [])))
    r.io.turn.set()
    with loop_reports() as seen:
        ups.read(r)  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0)  # the reader waits for Gradium's first answer
        stream.inbox.put_nowait({"type": "ready"})
        r.io.reader.cancel()  # in the same turn of the loop
        done, _ = await asyncio.wait({r.io.reader}, timeout=2)
        assert done and r.io.reader.cancelled()
        await ups.close([])
        await assert_nothing_left(seen)
