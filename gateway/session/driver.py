"""The session driver: the I/O around a `SessionCore`.

It owns the client port, the Gradium streams (one per request, or one shared socket for the session's
requests), the tasks (the client reader, one reader per request, a watchdog, timed flushes) and the
codec offload, performs the core's commands in order and feeds back what happens as events. The first
failure or the end of the session cancels every task and closes every upstream stream, so a vanished
client never leaves a Gradium socket open. Observers hear about it through the session's `Tap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from gateway.addons import Tap
from gateway.audio.transcode import AudioError
from gateway.config import Settings
from gateway.dialects.common import transform_gradium
from gateway.errors import GatewayError
from gateway.events import ContextEnd
from gateway.session.commands import (
    Acted,
    CancelTimer,
    ClientMessage,
    Close,
    Command,
    ContextOver,
    Drop,
    Failed,
    FlushAudio,
    GradiumEvents,
    Open,
    Read,
    RequestDone,
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
from gateway.session.port import BINARY, CLOSED, TEXT, ClientPort
from gateway.upstream import protocol as gradium
from gateway.upstream.gradium import GradiumClient, GradiumStream
from gateway.upstream.mux import GradiumMux

# Gradium messages read ahead for a request waiting its turn on a shared socket (about 20 minutes of
# audio): past it the request fails, rather than stalling the socket its predecessor needs
HELD_MAX = 16384
WATCH_MAX_S = 1.0  # the watchdog re-reads the core's deadline at least this often


class ClientGone(Exception):
    """The client socket closed or failed: nothing more to read."""


class RequestIO:
    """The driver's side of one request."""

    __slots__ = ("held", "reader", "ready", "timer", "turn", "upstream")

    def __init__(self, upstream: GradiumStream) -> None:
        self.upstream = upstream
        self.ready: dict[str, Any] | None = None  # Gradium's answer, read before the upgrade
        self.reader: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.turn = asyncio.Event()
        self.held: deque[Any] = deque()


class Driver:
    def __init__(self, core: SessionCore, gradium_client: GradiumClient, settings: Settings, tap: Tap) -> None:
        self.core = core
        self.gradium = gradium_client
        self.ready_timeout = settings.gradium.ready_timeout_s
        self.tap = tap
        self.port: ClientPort | None = None
        self.mux: GradiumMux | None = None
        self.warm: asyncio.Task[None] | None = None
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.close_code: int | None = None
        self.close_reason = b""
        self.exc: BaseException | None = None

    # -- commands --------------------------------------------------------------------------------

    async def run_commands(self, cmds: list[Command]) -> None:
        for i, cmd in enumerate(cmds):
            try:
                await self._do(cmd)
            except GatewayError as err:
                # I/O for a request failed: the core decides what that means (the context, or the session)
                rest = self.core.handle(Failed(err, getattr(cmd, "req", None)))
                await self.run_commands([c for c in cmds[i + 1:] if isinstance(c, Drop)] + rest)
                return

    async def run_commands_strict(self, cmds: list[Command]) -> None:
        """Before the upgrade: a failure is raised (it becomes the refusal), not handed to the core."""
        for cmd in cmds:
            await self._do(cmd)

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

    async def _do(self, cmd: Command) -> None:
        if isinstance(cmd, SendClient):
            port = self.port
            if port is None or port.closed:
                return
            if cmd.binary:
                await port.send_bytes(cmd.data)
            else:
                await port.send_text(cmd.data)
            self.tap.output(cmd.data)
        elif isinstance(cmd, SendGradium):
            await cmd.req.io.upstream.send(cmd.msg)
        elif isinstance(cmd, SendAudio):
            assert cmd.req.leg is not None
            try:
                msg = await cmd.req.leg.feed(cmd.chunk)
            except AudioError as exc:
                raise GatewayError("invalid_audio", str(exc)) from None
            if msg is not None:
                await cmd.req.io.upstream.send(msg)
        elif isinstance(cmd, FlushAudio):
            if cmd.req.leg is not None:
                try:
                    msg = cmd.req.leg.flush(final=not cmd.req.accepting)
                except AudioError as exc:
                    raise GatewayError("invalid_audio", str(exc)) from None
                if msg is not None:
                    await cmd.req.io.upstream.send(msg)
        elif isinstance(cmd, Open):
            await self._open(cmd.req, cmd.ready)
        elif isinstance(cmd, Read):
            io = cmd.req.io
            io.reader = asyncio.create_task(self._read(cmd.req), name=f"context:{cmd.req.key}")
        elif isinstance(cmd, Turn):
            if cmd.req.io is not None:  # else its Open is still running: it sees `req.head` when done
                cmd.req.io.turn.set()
        elif isinstance(cmd, StartTimer):
            io = cmd.req.io
            if io.timer is not None:
                io.timer.cancel()
            io.timer = asyncio.get_running_loop().call_later(cmd.seconds, self._timer, cmd.req)
        elif isinstance(cmd, CancelTimer):
            if cmd.req.io.timer is not None:
                cmd.req.io.timer.cancel()
                cmd.req.io.timer = None
        elif isinstance(cmd, Drop):
            await self._drop(cmd.req)
            if cmd.failed and self.mux is not None and self.mux.failure is not None:
                # the shared Gradium socket is gone (its other requests got the error too): the next
                # context opens a fresh one
                mux, self.mux = self.mux, None
                with contextlib.suppress(Exception):
                    await mux.close()
        elif isinstance(cmd, Close):
            # the close itself happens in `run`, once the client reader is stopped: a close sent from
            # here could race the reader for the client's answer and be cut off
            if self.close_code is None:
                self.close_code, self.close_reason = cmd.code, cmd.reason
            if not self.done.done():
                self.done.set_result(cmd.code)
        elif isinstance(cmd, Acted):
            self.tap.action(cmd.action, cmd.context)
        elif isinstance(cmd, ContextOver):
            if self.tap.addons.context_end:
                self.tap.addons.emit(ContextEnd(self.tap.flow, cmd.context, cmd.reason, cmd.upstream_request_id))
        elif isinstance(cmd, WarmUp):
            self._warm_up()

    async def _open(self, r: Request, ready: bool) -> None:
        spec = self.core.route.spec.gradium
        assert spec is not None and self.core.key is not None
        setup = r.plan.setup
        if self.core.spec.contexts.multiplex:
            if self.warm is not None and self.warm.done() and not self.warm.cancelled():
                err = self.warm.exception()
                self.warm = None
                if err is not None:
                    # the warm-up failed: that is this request's answer (no silent second attempt)
                    self.mux = None
                    raise err if isinstance(err, GatewayError) else GatewayError(
                        "upstream_unavailable", "Gradium connection failed")
            if self.mux is None:
                self.mux = GradiumMux(self.gradium, spec.kind, self.core.key)
            upstream: GradiumStream = await self.mux.open(setup)
        else:
            upstream = await self.gradium.open_ws(spec.kind, setup, self.core.key)
        r.io = io = RequestIO(upstream)
        if r.head:  # its turn came while it was opening
            io.turn.set()
        if ready:
            io.ready = await self._first_reply(upstream)

    async def _first_reply(self, upstream: GradiumStream) -> Any:
        try:
            return await asyncio.wait_for(upstream.recv(), self.ready_timeout)
        except TimeoutError:
            raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None

    def _warm_up(self) -> None:
        spec = self.core.route.spec.gradium
        if self.mux is not None or spec is None or self.core.key is None:
            return
        self.mux = GradiumMux(self.gradium, spec.kind, self.core.key)
        self.warm = self._spawn(self.mux.connect(), "warm-up")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(lambda t: (self.tasks.discard(t), t.cancelled() or t.exception()))
        return task

    def _timer(self, r: Request) -> None:
        r.io.timer = None
        self._spawn(self._guard(self.feed(TimerFired(r))), "timed-flush")

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            self._abort(exc)

    async def _drop(self, r: Request) -> None:
        io: RequestIO | None = r.io
        if io is None:
            return
        if io.timer is not None:
            io.timer.cancel()
            io.timer = None
        if io.reader is not None and io.reader is not asyncio.current_task():
            io.reader.cancel()
        with contextlib.suppress(Exception):
            await io.upstream.close()

    def _abort(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    # -- readers ---------------------------------------------------------------------------------

    async def _read(self, r: Request) -> None:
        io: RequestIO = r.io
        try:
            await self._wait_turn(r, io)
            transform = r.plan.transform
            if io.ready is not None:
                await self.feed(GradiumEvents(r, transform.on_gradium(io.ready)))
                first = False
            else:
                first = True
            while True:
                if io.held:
                    msg = io.held.popleft()
                elif first:
                    msg = await self._first_reply(io.upstream)
                else:
                    msg = await io.upstream.recv()
                first = False
                if isinstance(msg, BaseException):
                    raise msg
                if msg is None:
                    break
                await self.feed(GradiumEvents(r, await transform_gradium(transform, msg)))
                if msg.get("type") == gradium.END_OF_STREAM:
                    break
        except asyncio.CancelledError:
            raise
        except GatewayError as err:
            try:
                await self.feed(Failed(err, r))
            except Exception as exc:  # the client is gone
                self._abort(exc)
            return
        except Exception as exc:
            self._abort(exc)
            return
        try:
            await self.feed(RequestDone(r, time.monotonic(), io.upstream.request_id))
        except Exception as exc:
            self._abort(exc)

    async def _wait_turn(self, r: Request, io: RequestIO) -> None:
        """Until the earlier requests under this context id are done (their output goes first).

        On a shared Gradium socket, this request's messages are read meanwhile and held (errors too, in
        order), up to HELD_MAX: a request waiting its turn must not fill its inbox and stall the shared
        socket, or the request it waits for could never finish; past HELD_MAX this request fails."""
        if io.turn.is_set():
            return
        if self.mux is None:
            await io.turn.wait()
            return
        turn = asyncio.ensure_future(io.turn.wait())
        nxt: asyncio.Future[Any] | None = None
        try:
            while True:
                if len(io.held) >= HELD_MAX:
                    raise GatewayError("upstream_error", "Too much audio waiting behind an earlier request")
                nxt = asyncio.ensure_future(io.upstream.recv())
                done, _ = await asyncio.wait({turn, nxt}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        try:
                            io.held.append(await nxt)  # it may have completed meanwhile
                        except GatewayError as err:
                            io.held.append(err)
                    return
                try:
                    msg = nxt.result()
                except GatewayError as err:
                    io.held.append(err)
                    break
                io.held.append(msg)
                if msg is None or msg.get("type") == gradium.END_OF_STREAM:
                    break
            await turn
        finally:
            for f in (turn, nxt):
                if f is not None and not f.done():
                    f.cancel()

    # -- the session -----------------------------------------------------------------------------

    async def run(self, port: ClientPort) -> str:
        """Drive the session on `port` until it ends; returns its status."""
        self.port = port
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.run_commands(self.core.start(time.monotonic()))
            if not self.done.done():
                tasks = [asyncio.create_task(self._client_loop(), name="client"),
                         asyncio.create_task(self._watchdog(), name="watchdog")]
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
            for t in tasks:
                t.cancel()
            if self.close_code is not None and not port.closed:
                with contextlib.suppress(Exception):
                    await port.close(self.close_code, self.close_reason)
            await self.close_all()

    async def _fail(self, err: GatewayError) -> None:
        if self.core.state is not SessionState.CLOSED:
            with contextlib.suppress(Exception):
                await self.run_commands([c for c in self.core.handle(Failed(err)) if not isinstance(c, Drop)])

    async def close_all(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        for r in self.core.table.requests():
            await self._drop(r)
        if self.mux is not None:
            with contextlib.suppress(Exception):
                await self.mux.close()

    async def _client_loop(self) -> None:
        assert self.port is not None
        while True:
            self.core.handling = None
            msg = await self.port.receive()
            if msg.kind is CLOSED:
                raise ClientGone()
            if msg.kind is TEXT or msg.kind is BINARY:
                self.tap.frame(msg.data)
            await self.feed(ClientMessage(msg.kind, msg.data, time.monotonic()))

    async def _watchdog(self) -> None:
        while self.core.state is not SessionState.CLOSED:
            deadline = self.core.deadline()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                await self.feed(Tick(now))
                deadline = self.core.deadline()
            wait = WATCH_MAX_S if deadline is None else min(WATCH_MAX_S, max(deadline - now, 0.0))
            await asyncio.sleep(wait)
