"""The session driver: the I/O around a `SessionCore`.

It owns the client port, the Gradium side (`upstreams.py`: streams, the shared socket, a reader per
request), the tasks (the client reader, a watchdog, timed flushes) and the codec offload, performs the
core's commands in order and feeds back what happens as events. The first
failure or the end of the session cancels every task and closes every upstream stream, so a vanished
client never leaves a Gradium socket open. Observers hear about it through the session's `Tap`. How each
command is done is `runner.py`'s; a client frame on an aiohttp socket is handled where it is parsed
(`_take_frame`, `gateway/wsinbox.py`) while the client reader waits, with no task woken for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import Any

from aiohttp import WSMsgType

from gateway.addons import Tap
from gateway.audio.transcode import AudioError
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.session.commands import Close, Drop, Failed, SessionEvent, Shutdown, Tick
from gateway.session.core import GOING_AWAY, SessionCore, SessionState
from gateway.session.port import BINARY, CLOSED, TEXT, AiohttpPort, ClientPort, frame_kind
from gateway.session.runner import Runner
from gateway.session.upstreams import Upstreams
from gateway.upstream.gradium import GradiumClient
from gateway.wsinbox import Later, later_message, raising

WATCH_MAX_S = 1.0  # the watchdog re-reads the core's deadline at least this often
_WS_BINARY, _WS_TEXT = WSMsgType.BINARY, WSMsgType.TEXT  # read once: enum class attributes are slow on 3.11
_monotonic = time.monotonic


class ClientGone(Exception):
    """The client socket closed or failed: nothing more to read."""


class Driver(Runner):
    def __init__(self, core: SessionCore, gradium_client: GradiumClient, settings: Settings, tap: Tap) -> None:
        self.core = core
        self.tap = tap
        # `Acted` only feeds the `action_taken` hook: with nobody listening the core leaves it out
        core.report_actions = bool(tap.addons.action_taken)
        spec = core.route.spec.gradium
        self.upstreams = Upstreams(gradium_client, spec.kind if spec is not None else None,
                                   core.spec.contexts.multiplex, settings.gradium.ready_timeout_s,
                                   render=core.gradium, run=self.run_commands, run_now=self.run_now,
                                   feed=self.feed, abort=self._abort)
        self.port: ClientPort | None = None
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_reason = b""
        self.exc: BaseException | None = None
        self._watch_timer: asyncio.TimerHandle | None = None

    async def shutdown(self) -> None:
        """The gateway is stopping: finish what is owed, then close as a server going away."""
        try:
            await self.feed(Shutdown())
        except Exception as exc:
            self._abort(exc)

    async def force_close(self) -> None:
        """The drain time is over: close now (1001, going away)."""
        await self.run_commands([Close(GOING_AWAY)])

    async def feed(self, ev: SessionEvent) -> None:
        await self.run_commands(self.core.handle(ev))

    def _abort(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    # -- the session -----------------------------------------------------------------------------

    async def run(self, port: ClientPort) -> str:
        """Drive the session on `port` until it ends; returns its status."""
        self.port = port
        self._write = getattr(port, "write", None)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.run_commands(self.core.start(time.monotonic()))
            if not self.done.done():
                tasks = [asyncio.create_task(self._client_loop(), name="client")]
                self._watch()
                await asyncio.wait([*tasks, self.done], return_when=asyncio.FIRST_COMPLETED)
            if self.done.done():
                self.done.result()  # raises the failure, if that is how it ended
                return self.core.status
            finished = next(t for t in tasks if t.done())
            exc = finished.exception()
            if exc is not None:
                raise exc
            return "client_closed"
        except GatewayError as err:
            await self._fail(err)
            return err.kind
        except (ClientGone, ConnectionResetError) as gone:
            # the client loop's task keeps this exception, and its traceback holds this frame, which holds the
            # task: without the traceback the session is freed by reference counting, not by the collector
            gone.__traceback__ = None
            return "client_gone"
        except AudioError as exc:
            await self._fail(GatewayError("invalid_audio", str(exc)))
            return "invalid_audio"
        except Exception as exc:
            self.exc = exc
            await self._fail(GatewayError("internal", "Internal gateway error"))
            return "internal"
        finally:
            if self._watch_timer is not None:
                self._watch_timer.cancel()
                self._watch_timer = None
            for t in tasks:
                t.cancel()
            if self.close_code is None or port.closed:
                try:
                    await asyncio.gather(*tasks, return_exceptions=True)
                finally:
                    await self.close_all()
            else:
                # The close goes out at once: the client reader is cancelled already (it can no longer take
                # the client's answer from the close, which waits for it). The tasks are awaited (and their
                # outcomes read) and the Gradium side released meanwhile, while the client answers: the
                # session is over when its answer comes, not a teardown later, when the client may be
                # opening its next socket.
                released = asyncio.ensure_future(self._release(tasks))
                try:
                    with contextlib.suppress(Exception):
                        await port.close(self.close_code, self.close_reason)
                finally:
                    await asyncio.shield(released)

    async def _release(self, tasks: list[asyncio.Task[Any]]) -> None:
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.close_all()

    async def _fail(self, err: GatewayError) -> None:
        if self.core.state is not SessionState.CLOSED:
            with contextlib.suppress(Exception):
                await self.run_commands([c for c in self.core.handle(Failed(err)) if not isinstance(c, Drop)])

    async def close_all(self) -> None:
        """Every task of the session cancelled and awaited, every Gradium stream closed."""
        try:
            await self.upstreams.close(self.core.table.requests())
        finally:
            # the Gradium side no longer calls back into this driver: the two (and the session's core,
            # requests, tasks and sockets they hold) are freed when the session ends, not by a later garbage
            # collection (a pass of the collector per dozen sessions, up to a millisecond each)
            self.upstreams.detach()
        if not self.done.done():
            self.done.cancel()  # a late failure has no one to tell (and is never an unread exception)

    async def _client_loop(self) -> None:
        port, core, tap = self.port, self.core, self.tap
        assert port is not None
        # an aiohttp client is read here, not through the port: no coroutine of the port's and no `Inbound`
        # per frame (an STT client sends one every 80 ms, for minutes); with an inbox, frames that come while
        # this waits are handled as they are parsed (`_take_frame`), and only the rest come here
        ws = port.ws if isinstance(port, AiohttpPort) else None
        inbox = port.inbox if isinstance(port, AiohttpPort) else None
        context = contextvars.copy_context()  # the session's (log fields), for `_take_frame`
        try:
            while True:
                if ws is not None:
                    if inbox is not None:
                        inbox.listen(self._take_frame, context)  # nothing is queued: what comes next may be taken
                    msg = await ws.receive()
                    if inbox is not None:
                        inbox.sink = None
                    data = msg.data
                    if data.__class__ is Later:
                        await data  # what `_take_frame` could not finish
                        continue
                    kind = frame_kind(ws, msg)
                    if kind is not TEXT and kind is not BINARY:
                        data = b""
                else:
                    inbound = await port.receive()
                    kind, data = inbound.kind, inbound.data
                if kind is CLOSED:
                    raise ClientGone()
                now = time.monotonic()
                cmds = core.client(kind, data, now)
                if cmds:
                    later = self.run_now(cmds)
                    if later is not None:
                        await later
                if kind is TEXT or kind is BINARY:
                    # observers (a shadow's tee) see the frame once the primary forwarded it, stamped with its
                    # arrival: the primary's latencies count from there, not from after its own upstream send
                    tap.frame(data, now)
        finally:
            if inbox is not None:
                inbox.sink = None

    def _take_frame(self, msg: Any) -> Any:
        """A client frame, where aiohttp parsed it (the client reader waits in `receive` with nothing
        queued): what the reader's loop does with it, when that waits on nothing. None: taken; else what
        to queue for the reader (see `gateway/wsinbox.py`)."""
        t = msg.type
        if t is _WS_BINARY:
            kind = BINARY
        elif t is _WS_TEXT:
            kind = TEXT
        else:  # a close, a ping...: aiohttp's `receive` acts on it
            self.port.inbox.sink = None  # type: ignore[union-attr]
            return msg
        data = msg.data
        now = _monotonic()
        try:
            cmds = self.core.client(kind, data, now)
            later = self.run_now(cmds) if cmds else None
            if later is None:
                tap = self.tap
                if tap.frame_hooks:
                    tap.frame(data, now)
                else:  # what `Tap.frame` does with nobody watching, without the call
                    tap.frames_in += 1
                return None
            later = self._then_tap(later, data, now)
        except BaseException as exc:  # raised in the reader, as if it had read the frame itself
            later = raising(exc)
        self.port.inbox.sink = None  # type: ignore[union-attr]
        return later_message(later)

    async def _then_tap(self, later: Any, data: bytes, now: float) -> None:
        await later
        self.tap.frame(data, now)

    def _watch(self) -> None:
        """The watchdog: a loop timer, not a task (no coroutine, no future per wake-up), re-armed at the
        core's deadline or WATCH_MAX_S, whichever is sooner; a deadline passed feeds a `Tick` (a task of
        the session, whose failure ends the session like any other)."""
        self._watch_timer = None
        if self.core.state is SessionState.CLOSED or self.done.done():
            return
        deadline = self.core.deadline()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            self.upstreams.spawn(self._tick(now), "watchdog")
            return
        wait = WATCH_MAX_S if deadline is None else min(WATCH_MAX_S, deadline - now)
        self._watch_timer = asyncio.get_running_loop().call_later(wait, self._watch)

    async def _tick(self, now: float) -> None:
        try:
            await self.feed(Tick(now))
        except Exception as exc:
            self._abort(exc)
            return
        self._watch()
