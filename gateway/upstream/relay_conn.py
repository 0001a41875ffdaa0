"""One keep-alive HTTP/1.1 connection to a vendor for the REST passthrough's relay (`relay.RelayPool` keeps
them): the request written (a body in memory in the same write as its head), the answer parsed as it arrives
(`http1.Answer`, llhttp) and its body handed on with backpressure and a read timeout.

The vendor is paused while the client has more than `HIGH_WATER` bytes unread. A connection goes back to its
pool only after a whole answer to a wholly sent request with neither side asking to close; anything else
(a failure, a client leaving mid-answer, an answer before the upload ended, bytes after the answer) closes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Protocol

# aiohttp's own TCP_NODELAY helper (an undocumented module, unchanged across 3.x; what its connector uses)
from aiohttp.tcp_helpers import tcp_nodelay

from gateway.upstream import http1

HIGH_WATER = 256 * 1024  # answer bytes the client has not taken yet: the vendor is paused beyond this
_IDLE, _HEAD, _BODY, _DONE = range(4)  # a connection's state


class RelayError(Exception):
    """The gateway's own failure to talk to the vendor: `kind` is connect|tls|timeout|reset."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class Stale(RelayError):
    """A connection that closed before any byte of the answer: the request may be sent again elsewhere."""


class Keeper(Protocol):
    """What a connection needs of its pool."""

    def _keep(self, conn: VendorConnection) -> None: ...

    def _forget(self, conn: VendorConnection) -> None: ...


class VendorConnection(asyncio.Protocol):
    """One keep-alive connection; while a request is on it, also that request's answer (`status`, `reason`,
    `headers`, then `read_nowait`/`read` for the body, `release` at the end)."""

    def __init__(self, pool: Keeper, key: tuple[str, object], loop: asyncio.AbstractEventLoop) -> None:
        self.pool, self.key, self.loop = pool, key, loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.state = _IDLE
        self.idle_handle: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wait_since = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._upload: asyncio.Task[None] | None = None
        self._answer: http1.Answer | None = None
        self._begin(0.0)

    def _begin(self, read_timeout_s: float) -> None:
        self.read_timeout_s = read_timeout_s
        self.status, self.reason = 0, ""
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.got = 0  # bytes of the answer received
        self.last_read = self.loop.time()
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._exc: RelayError | None = None

    # -- the protocol side ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        tcp_nodelay(self.transport, True)  # type: ignore[arg-type]  # a request head is one small write

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        self.last_read = self.loop.time()
        answer = self._answer
        if answer is None or self.state == _IDLE:  # nothing was asked: the connection cannot carry another request
            self.keep_alive = False
            self.close()
            return
        before = answer.received
        try:
            answer.feed(data)
        except http1.Malformed as exc:
            self._fail(RelayError("reset", str(exc)))
            return
        if self.state == _HEAD:
            if not answer.head_done:
                return
            self.status, self.reason, self.headers = answer.status, answer.reason, answer.headers
            self.state = _BODY
        self._buffered += answer.received - before
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        if answer.done:
            self.state = _DONE
            # bytes past the answer's end: nothing can be trusted on this connection any more
            self.keep_alive = answer.keep_alive and not answer.extra
        self._wake(self._waiter)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says what it meant

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.state == _HEAD:
            kind = Stale if not self.got else RelayError
            self._fail(kind("reset", "The vendor closed the connection before answering"))
        elif self.state == _BODY:
            if self._answer is not None and self._answer.eof():  # the close is the body's end
                self.state = _DONE
                self._wake(self._waiter)
            else:
                self._fail(RelayError("reset", "The vendor broke off mid-answer"))
        elif self.state == _IDLE:
            self.pool._forget(self)
        self._wake(self._drain)

    def pause_writing(self) -> None:
        self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        self._wake(self._drain)
        self._drain = None

    # -- the answer -------------------------------------------------------------------------------------

    def _fail(self, exc: RelayError) -> None:
        if self._exc is None:
            self._exc = exc
        self.keep_alive = False
        self.close()
        self._wake(self._waiter)

    @staticmethod
    def _wake(fut: asyncio.Future[None] | None) -> None:
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _wait(self) -> None:
        """Until the vendor sends something or fails; `_check_silence` fails it after the read timeout."""
        self._waiter = fut = self.loop.create_future()
        self._wait_since = self.loop.time()
        if self._timer is None:  # one timer per request, re-armed lazily: not one per wait
            self._timer = self.loop.call_at(self._wait_since + self.read_timeout_s, self._check_silence)
        try:
            await fut
        finally:
            self._waiter = None

    def _check_silence(self) -> None:
        """The vendor's silence is counted from its last bytes or the start of the current wait (a client slow
        to read paused the vendor: that is not the vendor's silence), and only once the request is sent."""
        self._timer = None
        if self._waiter is None or self.closed:
            return  # nobody waits: the next wait arms the timer again
        now = self.loop.time()
        if self._upload is not None and not self._upload.done():
            due = now + self.read_timeout_s
        else:
            due = max(self.last_read, self._wait_since) + self.read_timeout_s
        if now < due:
            self._timer = self.loop.call_at(due, self._check_silence)
        else:
            self._fail(RelayError("timeout", "The vendor did not answer in time"))

    def read_nowait(self, limit: int) -> bytes:
        """What of the body has come already, at most about `limit` bytes (whole pieces, the first cut)."""
        if not self._pieces:
            return b""
        first = self._pieces[0]
        if len(first) > limit:
            self._pieces[0] = first[limit:]
            first = first[:limit]
        else:
            del self._pieces[0]  # the same list the parser appends to
        self._taken(len(first))
        return first

    async def read(self) -> bytes:
        """Every body byte that has come since the last read (waiting for some), b"" at the end."""
        while not self._pieces:
            if self._exc is not None:
                raise self._exc
            if self.state == _DONE:
                return b""
            await self._wait()
        pieces = self._pieces
        self._pieces = []
        if self._answer is not None:
            self._answer.pieces = self._pieces  # where the parser puts what comes next
        self._taken(self._buffered)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _taken(self, n: int) -> None:
        self._buffered -= n
        if self._paused and self._buffered <= HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    # -- the request ------------------------------------------------------------------------------------

    async def send(self, method: str, head: bytes, body: bytes | AsyncIterable[bytes] | None, chunked: bool,
                   read_timeout_s: float) -> None:
        """Write the request (a body in memory in the same write as the head) and wait for the answer's head."""
        assert self.transport is not None
        self._begin(read_timeout_s)
        self.state = _HEAD
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self._upload = asyncio.create_task(self._send_body(body, chunked), name="vendor-upload")
        # after the write: the answer's parser is not on the way to the vendor (nothing is read before the next turn)
        self._answer = http1.Answer(method, self._pieces)
        while self.state == _HEAD:
            if self._exc is not None:
                raise self._exc
            await self._wait()

    async def _send_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            async for data in body:
                if self.closed:
                    return
                if not data:
                    continue
                if chunked:
                    transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
                else:
                    transport.write(data)
                if self._drain is not None:
                    await self._drain
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        except Exception:  # the client's upload broke off: the vendor's request can never be whole
            self._fail(RelayError("reset", "The request body could not be read"))
        finally:
            self.last_read = self.loop.time()  # the vendor's silence counts from the end of the request

    def release(self) -> None:
        """The request is over: a whole exchange keeps the connection for the next one, anything else closes it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        upload = self._upload
        self._upload = None
        whole = upload is None or (upload.done() and not upload.cancelled())
        if self.state == _DONE and self.keep_alive and whole and not self.closed and self._exc is None:
            self.state = _IDLE
            self.pool._keep(self)
            return
        if upload is not None and not upload.done():
            upload.cancel()
        self.close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None

