"""The Gradium side of a session driver: one stream per request (or one socket shared by the session's
requests), and a reader task per request that turns Gradium's messages into client frames.

The reader is the per-frame path: a Gradium message goes through the request's transform (inline, or on
a codec thread when the audio work is heavy), the core renders its events (`SessionCore.gradium`, no
event object), and the driver sends what that gives (`run`). Messages with no events stop at the
transform. On a socket of its own, while the reader waits, that is done where aiohttp parses the message
(`_sink`, `gateway/wsinbox.py`): no task is woken for a `step`. Every task started here is kept, and
`close` cancels and awaits them all, so a session leaves no task behind, pending or with an exception
nobody read.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.dialects.common import prime_transform, transform_gradium
from gateway.errors import GatewayError
from gateway.mapping.transforms import Event
from gateway.session.commands import Command, Failed, RequestDone, SessionEvent
from gateway.session.contexts import Request
from gateway.upstream import protocol as gradium
from gateway.upstream.gradium import GradiumClient, GradiumStream, Kind
from gateway.upstream.mux import GradiumMux
from gateway.wsinbox import Later, Sink, later_message, raising

# Gradium messages read ahead for a request waiting its turn on a shared socket (about 20 minutes of
# audio): past it the request fails, rather than stalling the socket its predecessor needs
HELD_MAX = 16384
_CLOSING: set[asyncio.Future[Any]] = set()  # sessions' final cleanups, held until done


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


class Upstreams:
    def __init__(self, client: GradiumClient, kind: Kind | None, multiplex: bool, ready_timeout: float, *,
                 render: Callable[[Request, list[Event]], list[Command]],
                 run: Callable[[list[Command]], Awaitable[None]],
                 run_now: Callable[[list[Command]], Awaitable[None] | None] | None = None,
                 feed: Callable[[SessionEvent], Awaitable[None]],
                 abort: Callable[[BaseException], None]) -> None:
        self.client = client
        self.kind = kind
        self.multiplex = multiplex
        self.ready_timeout = ready_timeout
        self.render = render  # the core's `gradium`: one message's events -> commands
        self.run = run  # the driver's `run_commands`
        # ... and its `run_now` (commands done at once, or the coroutine for the rest)
        self.run_now = run_now if run_now is not None else run
        self.feed = feed  # an event for the core, its commands run
        self.abort = abort  # the session fails with this
        self.mux: GradiumMux | None = None
        self.warm: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()  # readers, timed flushes, warm-up: cancelled at the end
        self.releasing: set[asyncio.Future[Any]] = set()  # closes under way: awaited at the end, never cut

    # -- streams ---------------------------------------------------------------------------------

    async def open(self, r: Request, ready: bool, key: str) -> None:
        assert self.kind is not None
        setup = r.plan.setup
        if self.multiplex:
            if self.warm is not None and self.warm.done():
                warm, self.warm = self.warm, None
                err = None if warm.cancelled() else warm.exception()
                if err is not None:
                    # the warm-up failed: that is this request's answer (no silent second attempt)
                    self.mux = None
                    raise err if isinstance(err, GatewayError) else GatewayError(
                        "upstream_unavailable", "Gradium connection failed")
            if self.mux is None:
                self.mux = GradiumMux(self.client, self.kind, key)
            upstream: GradiumStream = await self.mux.open(setup)
        else:
            upstream = await self.client.open_ws(self.kind, setup, key)
        r.io = io = RequestIO(upstream)
        if r.head:  # its turn came while it was opening
            io.turn.set()
        if ready:
            io.ready = await self.first_reply(upstream)

    async def first_reply(self, upstream: GradiumStream) -> Any:
        # `asyncio.timeout`, not `wait_for`: on 3.11 `wait_for` returns a result that arrives as its task is
        # cancelled and drops the cancellation, and a cancelled reader would then wait for ever
        try:
            async with asyncio.timeout(self.ready_timeout):
                return await upstream.recv()
        except TimeoutError:
            raise GatewayError("upstream_unavailable", "Gradium did not answer in time") from None

    def warm_up(self, key: str | None) -> None:
        """Open the shared socket now, so its handshake is not in the first request's time to audio."""
        if self.mux is not None or key is None or self.kind is None:
            return
        self.mux = GradiumMux(self.client, self.kind, key)
        self.warm = self.spawn(self.mux.connect(), "warm-up")

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task of this session: kept until done, its outcome read (never "never retrieved")."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(_forget(self.tasks))
        return task

    async def drop(self, r: Request, *, failed: bool = False) -> None:
        """`r` stops: its timer and reader cancelled, its stream closed; `failed` and the shared socket
        is gone: the next context opens a fresh one."""
        io: RequestIO | None = r.io
        if io is not None:
            if io.timer is not None:
                io.timer.cancel()
                io.timer = None
            if io.reader is not None and io.reader is not asyncio.current_task():
                io.reader.cancel()
                # not kept: the task keeps its CancelledError, whose traceback holds the reader's frame, which
                # holds `io`: a cycle that would leave the request to the garbage collector (`_close` awaits it)
                io.reader = None
            if not io.upstream.close_now():  # else released already: no task, no loop turn
                await self._release(io.upstream.close())
        if failed and self.mux is not None and self.mux.failure is not None:
            mux, self.mux = self.mux, None
            await self._release(mux.close())

    async def _release(self, closing: Coroutine[Any, Any, None]) -> None:
        """Close an upstream stream or socket in a task of its own, which goes on if the task asking is
        cancelled meanwhile (a reader or the client loop stopped by the session's end): a close cut off
        halfway would leave a Gradium socket open. `close` waits for it."""
        task = asyncio.ensure_future(closing)
        self.releasing.add(task)
        task.add_done_callback(_forget(self.releasing))
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    async def close(self, requests: list[Request]) -> None:
        """The session is over: every task cancelled and awaited, every stream and the shared socket
        closed. Once started it finishes, even if the session's own task is cancelled meanwhile."""
        if not requests and not self.tasks and self.mux is None and not self.releasing:
            return  # nothing left (the usual end: every request finished): no task, no loop turns
        done = asyncio.ensure_future(self._close(requests))
        _CLOSING.add(done)
        done.add_done_callback(_forget(_CLOSING))
        await asyncio.shield(done)

    async def _close(self, requests: list[Request]) -> None:
        for r in requests:
            await self.drop(r)
        while self.tasks:
            pending = set(self.tasks)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.tasks -= pending
        if self.mux is not None:
            await self._release(self.mux.close())
        while self.releasing:
            await asyncio.gather(*self.releasing, return_exceptions=True)

    def detach(self) -> None:
        """The session is over: drop the driver's callbacks (they tie the driver and this object in a
        reference cycle); anything reported later has no one to tell."""
        self.run = _run_nothing
        self.run_now = _run_nothing_now
        self.feed = _feed_nothing
        self.abort = _ignore

    # -- readers ---------------------------------------------------------------------------------

    def read(self, r: Request) -> None:
        r.io.reader = self.spawn(self._read(r), f"context:{r.key}")

    async def _read(self, r: Request) -> None:
        io: RequestIO = r.io
        sink: Sink | None = None
        context: contextvars.Context | None = None
        try:
            transform = r.plan.transform
            heavy = transform.heavy  # else the transform runs inline: no coroutine per message
            if heavy:  # the encoder opens on a codec thread while Gradium prepares the first audio
                await prime_transform(transform)
            elif getattr(io.upstream, "can_listen", bool)():  # (a duck-typed stream may not have it)
                sink = self._sink(r, io.upstream)  # messages are then taken where they are parsed
                context = contextvars.copy_context()  # ... in this reader's context (its log fields)
            await self._wait_turn(io)
            render, run = self.render, self.run
            if io.ready is not None:
                cmds = render(r, transform.on_gradium(io.ready))
                if cmds:
                    await run(cmds)
                first = False
            else:
                first = True
            while True:
                if io.held:
                    msg = io.held.popleft()
                elif first:
                    msg = await self.first_reply(io.upstream)
                else:
                    if sink is not None:
                        io.upstream.listen(sink, context)  # nothing queued (`recv` returned it all): take the rest
                    msg = await io.upstream.recv()
                    if sink is not None:
                        io.upstream.listen(None)
                    if msg.__class__ is Later:
                        await msg  # what the sink could not finish (or its exception, raised here)
                        continue
                first = False
                if isinstance(msg, BaseException):
                    raise msg
                if msg is None:
                    break
                events = await transform_gradium(transform, msg) if heavy else transform.on_gradium(msg)
                if events:
                    cmds = render(r, events)
                    if cmds:
                        await run(cmds)
                if msg.get("type") == gradium.END_OF_STREAM:
                    break
        except asyncio.CancelledError:
            raise
        except GatewayError as err:
            # the request keeps its error, whose traceback would hold this frame, which holds the request: a
            # cycle; what the error says is its kind and message
            err.__traceback__ = None
            try:
                await self.feed(Failed(err, r))
            except Exception as exc:  # the client is gone
                self.abort(exc)
            return
        except Exception as exc:
            self.abort(exc)
            return
        finally:
            if sink is not None:
                io.upstream.listen(None)
        try:
            await self.feed(RequestDone(r, time.monotonic(), io.upstream.request_id))
        except Exception as exc:
            self.abort(exc)

    def _sink(self, r: Request, upstream: GradiumStream) -> Sink:
        """What `_read` does with a plain Gradium message (a `step`, a word), done where it is parsed, while
        `_read` waits in `recv` with nothing queued: None when done, else what to queue for `_read` (the
        message itself when `recv` must read it, or what is left to await; see `gateway/wsinbox.py`)."""
        take = upstream.take
        on_gradium = r.plan.transform.on_gradium

        def sink(msg: Any) -> Any:
            data = take(msg)
            if data is None:
                upstream.listen(None)
                return msg
            try:
                events = on_gradium(data)
                if not events:
                    return None
                cmds = self.render(r, events)
                if not cmds:
                    return None
                later = self.run_now(cmds)
                if later is None:
                    return None
            except BaseException as exc:  # raised in `_read`, as if it had read the message itself
                later = raising(exc)
            upstream.listen(None)
            return later_message(later, upstream)

        return sink

    async def _wait_turn(self, io: RequestIO) -> None:
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
                    try:
                        io.held.append(await nxt)  # it may have completed meanwhile
                    except GatewayError as err:
                        io.held.append(err)
                    except asyncio.CancelledError:
                        if _cancelling():  # this reader itself is being cancelled, not only `nxt`
                            raise
                    return
                try:
                    msg = nxt.result()
                except GatewayError as err:
                    io.held.append(err)
                    break
                finally:
                    nxt = None
                io.held.append(msg)
                if msg is None or msg.get("type") == gradium.END_OF_STREAM:
                    break
            await turn
        finally:
            _settle(turn, nxt)


def _settle(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel what is still running; whatever each one ends with is read when it ends (so nothing is
    reported as "exception was never retrieved")."""
    for f in futures:
        if f is not None:
            f.cancel()
            f.add_done_callback(_retrieve)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _retrieve(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        f.exception()


def _forget(tasks: set[Any]) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        _retrieve(task)  # its failure was handled where it happened (the tasks guard their work)

    return done


async def _run_nothing(cmds: list[Command]) -> None:
    return None


def _run_nothing_now(cmds: list[Command]) -> None:
    return None


async def _feed_nothing(ev: SessionEvent) -> None:
    return None


def _ignore(exc: BaseException) -> None:
    return None
