"""The session driver: the I/O around a `SessionCore`.

It owns the client port, the Gradium side (`upstreams.py`: streams, the shared socket, a reader per
request), the tasks (the client reader, a watchdog, timed flushes) and the codec offload, performs the
core's commands in order and feeds back what happens as events. The first
failure or the end of the session cancels every task and closes every upstream stream, so a vanished
client never leaves a Gradium socket open. Observers hear about it through the session's `Tap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.addons import Tap
from gateway.audio.transcode import AudioError
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.events import ContextEnd
from gateway.session.commands import (
    Acted,
    CancelTimer,
    Close,
    Command,
    ContextOver,
    Drop,
    Failed,
    FlushAudio,
    Open,
    Read,
    SendAudio,
    SendClient,
    SendGradium,
    SessionEvent,
    Shutdown,
    StartTimer,
    Tick,
    TimerFired,
    Turn,
    WarmUp,
)
from gateway.session.contexts import Request
from gateway.session.core import GOING_AWAY, SessionCore, SessionState
from gateway.session.port import BINARY, CLOSED, TEXT, AiohttpPort, ClientPort, frame_kind
from gateway.session.upstreams import Upstreams
from gateway.upstream.gradium import GradiumClient

WATCH_MAX_S = 1.0  # the watchdog re-reads the core's deadline at least this often


class ClientGone(Exception):
    """The client socket closed or failed: nothing more to read."""


class Driver:
    def __init__(self, core: SessionCore, gradium_client: GradiumClient, settings: Settings, tap: Tap) -> None:
        self.core = core
        self.tap = tap
        # `Acted` only feeds the `action_taken` hook: with nobody listening the core leaves it out
        core.report_actions = bool(tap.addons.action_taken)
        spec = core.route.spec.gradium
        self.upstreams = Upstreams(gradium_client, spec.kind if spec is not None else None,
                                   core.spec.contexts.multiplex, settings.gradium.ready_timeout_s,
                                   render=core.gradium, run=self.run_commands, feed=self.feed, abort=self._abort)
        self.port: ClientPort | None = None
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_reason = b""
        self.exc: BaseException | None = None
        self._watch_timer: asyncio.TimerHandle | None = None

    # -- commands --------------------------------------------------------------------------------

    async def run_commands(self, cmds: list[Command]) -> None:
        i = 0
        for c in cmds:
            i += 1
            try:
                cls = c.__class__
                if cls is SendClient:  # the per-frame commands, inline
                    port = self.port
                    if port is not None and not port.closed:
                        await (port.send_bytes(c.data) if c.binary else port.send_text(c.data))
                        self.tap.output(c.data)
                    continue
                if cls is SendAudio and (leg := c.req.leg) is not None and not leg.heavy:
                    # a client audio chunk (STT) that needs no codec thread: no coroutine of its own
                    try:
                        pcm = leg.pcm_inline(c.chunk)
                    except AudioError as exc:
                        raise GatewayError("invalid_audio", str(exc)) from None
                    if pcm and (sending := c.req.io.upstream.write_audio(pcm)) is not None:
                        await sending
                    continue
                now = _NOW.get(cls)
                if now is not None:
                    now(self, c)
                else:
                    await _IO[cls](self, c)
            except GatewayError as err:
                # I/O for a request failed: the core decides what that means (the context, or the session)
                rest = self.core.handle(Failed(err, getattr(c, "req", None)))
                await self.run_commands([d for d in cmds[i:] if isinstance(d, Drop)] + rest)
                return

    async def run_commands_strict(self, cmds: list[Command]) -> None:
        """Before the upgrade: a failure is raised (it becomes the refusal), not handed to the core."""
        for c in cmds:
            now = _NOW.get(c.__class__)
            if now is not None:
                now(self, c)
            else:
                await _IO[c.__class__](self, c)

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

    async def _send_client(self, c: SendClient) -> None:
        port = self.port
        if port is not None and not port.closed:
            await (port.send_bytes(c.data) if c.binary else port.send_text(c.data))
            self.tap.output(c.data)

    async def _send_gradium(self, c: SendGradium) -> None:
        await c.req.io.upstream.send(c.msg)

    async def _send_audio(self, c: SendAudio) -> None:
        leg = c.req.leg
        assert leg is not None
        try:
            pcm = await leg.pcm(c.chunk) if leg.heavy else leg.pcm_inline(c.chunk)
        except AudioError as exc:
            raise GatewayError("invalid_audio", str(exc)) from None
        if pcm and (sending := c.req.io.upstream.write_audio(pcm)) is not None:
            await sending

    async def _flush_audio(self, c: FlushAudio) -> None:
        if c.req.leg is not None:
            try:
                msg = c.req.leg.flush(final=not c.req.accepting)
            except AudioError as exc:
                raise GatewayError("invalid_audio", str(exc)) from None
            if msg is not None:
                await c.req.io.upstream.send(msg)

    async def _open(self, c: Open) -> None:
        assert self.core.key is not None
        await self.upstreams.open(c.req, c.ready, self.core.key)

    def _read(self, c: Read) -> None:
        self.upstreams.read(c.req)

    def _turn(self, c: Turn) -> None:
        if c.req.io is not None:  # else its Open is still running: it sees `req.head` when done
            c.req.io.turn.set()

    def _start_timer(self, c: StartTimer) -> None:
        io = c.req.io
        if io.timer is not None:
            io.timer.cancel()
        io.timer = asyncio.get_running_loop().call_later(c.seconds, self._timer, c.req)

    def _cancel_timer(self, c: CancelTimer) -> None:
        if c.req.io.timer is not None:
            c.req.io.timer.cancel()
            c.req.io.timer = None

    async def _drop(self, c: Drop) -> None:
        await self.upstreams.drop(c.req, failed=c.failed)

    def _close(self, c: Close) -> None:
        # the close itself happens in `run`, once the client reader is stopped: a close sent from
        # here could race the reader for the client's answer and be cut off
        if self.close_code is None:
            self.close_code, self.close_reason = c.code, c.reason
        if not self.done.done():
            self.done.set_result(c.code)

    def _acted(self, c: Acted) -> None:
        self.tap.action(c.action, c.context)

    def _context_over(self, c: ContextOver) -> None:
        if self.tap.addons.context_end:
            self.tap.addons.emit(ContextEnd(self.tap.flow, c.context, c.reason, c.upstream_request_id))

    def _warm_up(self, c: WarmUp) -> None:
        self.upstreams.warm_up(self.core.key)

    def _timer(self, r: Request) -> None:
        r.io.timer = None
        self.upstreams.spawn(self._guard(self.feed(TimerFired(r))), "timed-flush")

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            self._abort(exc)

    def _abort(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    # -- the session -----------------------------------------------------------------------------

    async def run(self, port: ClientPort) -> str:
        """Drive the session on `port` until it ends; returns its status."""
        self.port = port
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
        except (ClientGone, ConnectionResetError):
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
        # per frame (an STT client sends one every 80 ms, for minutes)
        ws = port.ws if isinstance(port, AiohttpPort) else None
        while True:
            if ws is not None:
                msg = await ws.receive()
                kind = frame_kind(ws, msg)
                data = msg.data if kind is TEXT or kind is BINARY else b""
            else:
                inbound = await port.receive()
                kind, data = inbound.kind, inbound.data
            if kind is CLOSED:
                raise ClientGone()
            now = time.monotonic()
            cmds = core.client(kind, data, now)
            if cmds:
                await self.run_commands(cmds)
            if kind is TEXT or kind is BINARY:
                # observers (a shadow's tee) see the frame once the primary forwarded it, stamped with its
                # arrival: the primary's latencies count from there, not from after its own upstream send
                tap.frame(data, now)

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


# commands by type: those done at once, and those that wait on I/O (plain functions, not a table of bound
# methods per driver, which would tie each driver to itself in a reference cycle)
_NOW: dict[type, Callable[[Driver, Any], None]] = {
    Read: Driver._read, Turn: Driver._turn, StartTimer: Driver._start_timer, CancelTimer: Driver._cancel_timer,
    Close: Driver._close, Acted: Driver._acted, ContextOver: Driver._context_over, WarmUp: Driver._warm_up}
_IO: dict[type, Callable[[Driver, Any], Awaitable[None]]] = {
    SendGradium: Driver._send_gradium, SendAudio: Driver._send_audio, FlushAudio: Driver._flush_audio,
    Open: Driver._open, Drop: Driver._drop, SendClient: Driver._send_client}
