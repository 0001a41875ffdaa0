"""How the driver does each of the core's commands: at once where it can, in a coroutine where it must wait.

`run_now` is the per-frame engine: it does commands in order for as long as none has to wait (client audio
written to Gradium, frames written to the client, timers, bookkeeping) and returns None, or the coroutine
that does the rest (from the first command that waits on I/O, or that failed), which its caller awaits. It
runs in tasks (`run_commands`) and in the sinks that handle frames where they are parsed
(`gateway/wsinbox.py`), where nothing may be awaited. A GatewayError from a command goes to the core
(`Failed`), which decides what it means (the context, or the session); any other exception propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.addons import Tap
from gateway.audio.transcode import AudioError
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
    StartTimer,
    TimerFired,
    Turn,
    WarmUp,
)
from gateway.session.contexts import Request
from gateway.session.core import SessionCore
from gateway.session.port import ClientPort
from gateway.session.upstreams import Upstreams


class Runner:
    core: SessionCore
    tap: Tap
    upstreams: Upstreams
    port: ClientPort | None
    done: asyncio.Future[int]
    close_code: int | None
    close_reason: bytes
    # the client port's `write(data, binary)`: None when the frame is written, else what to await (None:
    # the port has none, its sends are coroutines)
    _write: Callable[[bytes, bool], Awaitable[None] | None] | None = None

    async def feed(self, ev: SessionEvent) -> None:  # pragma: no cover - the driver's
        raise NotImplementedError

    def _abort(self, exc: BaseException) -> None:  # pragma: no cover - the driver's
        raise NotImplementedError

    def run_now(self, cmds: list[Command]) -> Awaitable[None] | None:
        """Do `cmds` in order while none waits: None when all are done, else the coroutine doing the rest."""
        i = 0
        for c in cmds:
            i += 1
            cls = c.__class__
            try:
                if cls is SendAudio and (leg := (r := c.req).leg) is not None and not leg.heavy:
                    # a client audio chunk (STT) that needs no codec thread: the per-frame command
                    if leg.passthrough:
                        pcm = c.chunk
                    else:
                        try:
                            pcm = leg.pcm_inline(c.chunk)
                        except AudioError as exc:
                            raise GatewayError("invalid_audio", str(exc)) from None
                    if pcm and (sending := r.io.upstream.write_audio(pcm)) is not None:
                        return self._sent(sending, None, cmds, i)
                    continue
                if cls is SendClient:
                    port = self.port
                    if port is not None and not port.closed:
                        write = self._write
                        if write is None:
                            return self._run_from(cmds, i - 1)
                        sending = write(c.data, c.binary)
                        if sending is not None:
                            return self._sent(sending, c.data, cmds, i)
                        self.tap.output(c.data)
                    continue
                if cls is SendGradium:  # a flush, a text (TTS)...
                    if (sending := c.req.io.upstream.write(c.msg)) is not None:
                        return self._sent(sending, None, cmds, i)
                    continue
                now = _NOW.get(cls)
                if now is None:
                    return self._run_from(cmds, i - 1)
                now(self, c)
            except GatewayError as err:
                return self._failed(err, c, cmds, i)
        return None

    async def run_commands(self, cmds: list[Command]) -> None:
        later = self.run_now(cmds)
        if later is not None:
            await later

    async def _run_from(self, cmds: list[Command], i: int) -> None:
        """`cmds[i]`, which waits on I/O, then the rest."""
        c = cmds[i]
        try:
            await _IO[c.__class__](self, c)
        except GatewayError as err:
            await self._failed(err, c, cmds, i + 1)
            return
        await self.run_commands(cmds[i + 1:])

    async def _sent(self, sending: Awaitable[None], output: bytes | None, cmds: list[Command], i: int) -> None:
        """A frame written that the transport asks to wait for (or sent by aiohttp), then the rest."""
        c = cmds[i - 1]
        try:
            await sending
        except GatewayError as err:
            await self._failed(err, c, cmds, i)
            return
        if output is not None:
            self.tap.output(output)
        await self.run_commands(cmds[i:])

    async def _failed(self, err: GatewayError, c: Command, cmds: list[Command], i: int) -> None:
        # I/O for a request failed: the core decides what that means (the context, or the session); the
        # rest of the batch is dropped but for its Drops (streams to release)
        rest = self.core.handle(Failed(err, getattr(c, "req", None)))
        await self.run_commands([d for d in cmds[i:] if isinstance(d, Drop)] + rest)

    async def run_commands_strict(self, cmds: list[Command]) -> None:
        """Before the upgrade: a failure is raised (it becomes the refusal), not handed to the core."""
        for c in cmds:
            now = _NOW.get(c.__class__)
            if now is not None:
                now(self, c)
            else:
                await _IO[c.__class__](self, c)

    # -- the commands that wait on I/O -------------------------------------------------------------

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

    async def _drop(self, c: Drop) -> None:
        await self.upstreams.drop(c.req, failed=c.failed)

    # -- the commands done at once -----------------------------------------------------------------

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


# commands by type: those done at once, and those that wait on I/O (plain functions, not a table of bound
# methods per driver, which would tie each driver to itself in a reference cycle)
_NOW: dict[type, Callable[[Runner, Any], None]] = {
    Read: Runner._read, Turn: Runner._turn, StartTimer: Runner._start_timer, CancelTimer: Runner._cancel_timer,
    Close: Runner._close, Acted: Runner._acted, ContextOver: Runner._context_over, WarmUp: Runner._warm_up}
_IO: dict[type, Callable[[Runner, Any], Awaitable[None]]] = {
    SendGradium: Runner._send_gradium, SendAudio: Runner._send_audio, FlushAudio: Runner._flush_audio,
    Open: Runner._open, Drop: Runner._drop, SendClient: Runner._send_client}
