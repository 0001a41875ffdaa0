"""The REST passthrough's HTTP/1.1 client: pooled keep-alive connections to the vendor, below aiohttp's client.

Why not `aiohttp.ClientSession`: a relayed request's critical path (client bytes in -> vendor write) spent
~39% of its Python bytecodes in `ClientSession._request` (request object, payload registry, cookie filter,
connector bookkeeping) and, on Python 3.11, one more event-loop turn for the body-writer task; the answer
side builds a `ClientResponse` and a `StreamReader`. A relay needs none of it: the request is already an
HTTP message (method, raw target, headers as the client sent them), so its head and a body in memory leave
in one write, and the answer's head is parsed once and its body bytes handed on as they arrive.

What it does (RFC 9112; the request head and the answer's parsing, llhttp through `httptools`, are `http1.py`,
one connection is `relay_conn.py`): `Host` and the body's framing are the only headers it adds; a body in
memory goes with `Content-Length`, a streamed one as it came (the client's `Content-Length`) or chunked;
interim 1xx answers are skipped; an answer's end is its `Content-Length`, its last chunk (trailers dropped)
or the close; HEAD, 1xx, 204 and 304 have none. Nothing is decompressed. A connection is kept after a whole
exchange (`relay_conn`) and closed after `IDLE_S` idle (aiohttp's keep-alive default) or when the vendor
closes it. An idempotent request whose reused connection turns out closed before any answer byte is sent once
more on a new one (aiohttp does the same).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable
from functools import lru_cache

from multidict import CIMultiDict
from yarl import URL

from gateway.upstream import http1
from gateway.upstream.dns_cache import DnsCache
from gateway.upstream.relay_conn import RelayError, Stale, VendorConnection

__all__ = ["RelayError", "RelayPool", "VendorConnection"]

IDLE_S = 15.0
# idle connections kept per vendor origin: aiohttp's pool (limit=0) kept every one; a small cap would close
# most of a burst's connections at its end and pay their TLS handshakes again at the next burst
MAX_IDLE = 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


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
            except Stale:
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
        await self._dns.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run
