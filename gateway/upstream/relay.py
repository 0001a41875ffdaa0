"""The REST passthrough's HTTP/1.1 client: pooled keep-alive connections to the vendor, below aiohttp's client.

Why not `aiohttp.ClientSession`: a relayed request's critical path (client bytes in -> vendor write) spent
~39% of its Python bytecodes in `ClientSession._request` (request object, payload registry, cookie filter,
connector bookkeeping) and, on Python 3.11, one more event-loop turn for the body-writer task; the answer
side builds a `ClientResponse` and a `StreamReader`. A relay needs none of it: the request is already an
HTTP message (method, raw target, headers as the client sent them), so its head and a body in memory leave
in one write, and the answer's head is parsed once and its body bytes handed on as they arrive.

What it does (RFC 9112; the framing itself is `http1.py`, without I/O): `Host` and the body's framing are the
only headers it adds; a body in memory goes with `Content-Length`, a streamed one as it came (the client's
`Content-Length`) or chunked; interim 1xx answers are skipped; an answer's end is its `Content-Length`, its
last chunk (trailers dropped) or the close; HEAD, 1xx, 204 and 304 have none. Nothing is decompressed. A
connection goes back to its pool only after a whole answer to a wholly sent request with neither side asking
to close, and is closed after `IDLE_S` idle (aiohttp's keep-alive default) or when the vendor closes it. An
idempotent request whose reused connection turns out closed before any answer byte is sent once more on a new
one (aiohttp does the same). The vendor is paused while the client has more than `HIGH_WATER` bytes unread.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable
from functools import lru_cache

from aiohttp.tcp_helpers import tcp_nodelay
from multidict import CIMultiDict
from yarl import URL

from gateway.upstream import http1
from gateway.upstream.dns_cache import DnsCache

IDLE_S = 15.0
# idle connections kept per vendor origin: aiohttp's pool (limit=0) kept every one; a small cap would close
# most of a burst's connections at its end and pay their TLS handshakes again at the next burst
MAX_IDLE = 1024
HIGH_WATER = 256 * 1024  # answer bytes the client has not taken yet: the vendor is paused beyond this
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_IDLE, _HEAD, _BODY, _DONE = range(4)  # a connection's state


class RelayError(Exception):
    """The gateway's own failure to talk to the vendor: `kind` is connect|tls|timeout|reset."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class _Stale(RelayError):
    """A connection that closed before any byte of the answer: the request may be sent again elsewhere."""


@lru_cache(maxsize=64)
def _origin(origin: str) -> tuple[str, int, bool, str]:
    """(host to dial, port, TLS, `Host` header) of `scheme://host[:port]`, parsed once per vendor."""
    u = URL(origin)
    if u.scheme not in ("http", "https") or not u.raw_host or u.user is not None:
        raise ValueError(f"not a plain http(s) origin: {origin}")
    host = u.raw_host
    netloc = f"[{host}]" if ":" in host else host
    port = u.port or (443 if u.scheme == "https" else 80)
    return host, port, u.scheme == "https", netloc if u.is_default_port() else f"{netloc}:{port}"


@lru_cache(maxsize=1)
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class VendorConnection(asyncio.Protocol):
    """One keep-alive connection; while a request is on it, also that request's answer (`status`, `reason`,
    `headers`, then `read_nowait`/`read` for the body, `release` at the end)."""

    def __init__(self, pool: RelayPool, key: tuple[str, object], loop: asyncio.AbstractEventLoop) -> None:
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
        self._begin("GET", 0.0)

    def _begin(self, method: str, read_timeout_s: float) -> None:
        self.method, self.read_timeout_s = method, read_timeout_s
        self.status, self.reason = 0, ""
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.got = 0  # bytes of the answer received
        self.last_read = self.loop.time()
        self._partial = b""  # an incomplete head
        self._body: http1.BodyDecoder | None = None
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
        try:
            if self.state == _BODY:
                self._feed_body(data)
            elif self.state == _HEAD:
                self._feed_head(data)
            else:  # nothing was asked: whatever this is, the connection cannot carry another request
                self.keep_alive = False
                self.close()
        except http1.Malformed as exc:
            self._fail(RelayError("reset", str(exc)))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says what it meant

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if self.state == _HEAD:
            kind = _Stale if not self.got else RelayError
            self._fail(kind("reset", "The vendor closed the connection before answering"))
        elif self.state == _BODY:
            if self._body is not None and self._body.framing == http1.CLOSE:  # the close is the body's end
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

    def _feed_head(self, data: bytes) -> None:
        buf = self._partial + data if self._partial else data
        while True:
            split = http1.split_head(buf)
            if split is None:
                self._partial = buf
                return
            head = http1.parse_head(split[0], self.method)
            buf = split[1]
            if head.status >= 200 or head.status == 101:
                break
            # an interim answer (100 Continue, 103 Early Hints): the final one follows
        self._partial = b""
        self.status, self.reason, self.headers, self.keep_alive = head.status, head.reason, head.headers, \
            head.keep_alive
        self._body = http1.BodyDecoder(head)
        self.state = _BODY
        self._wake(self._waiter)
        if buf or self._body.done:
            self._feed_body(buf)

    def _feed_body(self, data: bytes) -> None:
        body = self._body
        assert body is not None
        if data:
            self._buffered += body.feed(data, self._pieces)
            if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
        if body.done:
            self.state = _DONE
            if body.extra:  # bytes past the answer's end: nothing can be trusted on this connection any more
                self.keep_alive = False
        self._wake(self._waiter)

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
            del self._pieces[0]
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
        pieces, self._pieces = self._pieces, []
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
        self._begin(method, read_timeout_s)
        self.state = _HEAD
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self._upload = asyncio.create_task(self._send_body(body, chunked), name="vendor-upload")
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


class RelayPool:
    """Keep-alive connections per vendor origin (and TLS context); `request` sends one request on one."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, object], list[VendorConnection]] = {}
        self._dns = DnsCache()
        self._closed = False

    async def request(self, method: str, url: str, headers: CIMultiDict[str],
                      body: bytes | AsyncIterable[bytes] | None, *,
                      ssl_opt: ssl.SSLContext | bool, connect_timeout_s: float,
                      read_timeout_s: float) -> VendorConnection:
        """Send `method url` (an absolute, already encoded URL) with `headers` (name/value pairs, sent as they
        are) and `body`; returns the connection once the answer's head is in (`release` it when done)."""
        cut = url.find("/", url.find("://") + 3)
        origin, target = (url[:cut], url[cut:]) if cut >= 0 else (url, "/")
        host, port, tls, host_header = _origin(origin)
        ctx = (ssl_opt if isinstance(ssl_opt, ssl.SSLContext) else _default_tls()) if tls else None
        streamed = body is not None and not isinstance(body, bytes)
        head, chunked = http1.request_head(method, target, host_header, headers.items(),
                                           None if streamed else body, streamed)  # type: ignore[arg-type]
        key = (origin, ctx)
        for attempt in (0, 1):
            conn, reused = await self._acquire(key, host, port, ctx, connect_timeout_s)
            try:
                await conn.send(method, head, body, chunked, read_timeout_s)
                return conn
            except _Stale:
                conn.release()
                if attempt or not reused or streamed or method not in IDEMPOTENT:
                    raise RelayError("reset", "The vendor closed the connection before answering") from None
            except BaseException:
                conn.release()
                raise
        raise AssertionError("unreachable")

    async def _acquire(self, key: tuple[str, object], host: str, port: int, ctx: ssl.SSLContext | None,
                       timeout_s: float) -> tuple[VendorConnection, bool]:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_handle is not None:
                conn.idle_handle.cancel()
                conn.idle_handle = None
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                return await self._connect(loop, key, host, port, ctx), False
        except TimeoutError:
            raise RelayError("timeout", "The vendor did not answer in time") from None
        except ssl.SSLError:  # certificate verification included
            raise RelayError("tls", "TLS error talking to the vendor") from None
        except OSError:
            raise RelayError("connect", "The vendor is unreachable") from None

    async def _connect(self, loop: asyncio.AbstractEventLoop, key: tuple[str, object], host: str, port: int,
                       ctx: ssl.SSLContext | None) -> VendorConnection:
        """A new connection to the first of the host's addresses that takes it (TLS checks the host's name)."""
        failure: OSError | None = None
        for family, ip in await self._dns.resolve(host, port):
            try:
                _, conn = await loop.create_connection(lambda: VendorConnection(self, key, loop), ip, port, ssl=ctx,
                                                       family=family, server_hostname=host if ctx else None)
                return conn
            except ssl.SSLError:
                raise
            except OSError as exc:
                failure = exc
        self._dns.forget(host, port)
        raise failure or OSError(f"no address for {host}")

    def _keep(self, conn: VendorConnection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE or self._closed:  # a request that ends after `close` keeps nothing open
            conn.close()
            return
        idle.append(conn)
        conn.idle_handle = conn.loop.call_later(IDLE_S, self._expire, conn)

    def _expire(self, conn: VendorConnection) -> None:
        conn.idle_handle = None
        self._forget(conn)
        conn.close()

    def _forget(self, conn: VendorConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        """Close every idle connection (those in use close when their request ends)."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run
