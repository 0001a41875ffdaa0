"""Passthrough to the legacy vendor (target `legacy`): an HTTP streaming proxy and a WebSocket relay.

The request goes to the vendor unchanged except credentials and hop-by-hop headers (specs/traffic.md §2):
bodies stream both ways (no buffering, no decompression: HTTP goes through `relay.RelayPool`, which adds only
`Host` and the body's framing; sockets use aiohttp with `auto_decompress=False`), WebSocket frames keep
their type and bytes (`decode_text=False` on both sockets), close codes and reasons cross both ways.
Only failures of the gateway itself (vendor unreachable, TLS) raise `PassthroughError`; whatever the vendor
answers, error or not, reaches the client as it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import operator
import os
import re
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.errors import GatewayError
from gateway.upstream.relay import RelayError, RelayPool

# RFC 9110 §7.6.1 plus what aiohttp or the gateway sets itself.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
     "proxy-authenticate", "proxy-authorization", "host"}
)
# a WebSocket dial is made by aiohttp, with a request of its own that has no body: the client's handshake
# headers and any that describe a body (a client may send them; the vendor would then wait for that body
# on the dial's connection)
WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                          "sec-websocket-protocol", "sec-websocket-accept", "content-length", "content-type",
                          "content-encoding", "expect"})
FORWARDED = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"})
CLOSE_TIMEOUT_S = 5.0
SMALL_BODY = 64 * 1024  # bodies up to this size (with a Content-Length) are sent in one piece
# What of the body that came in with the vendor's headers leaves with ours: a bounded first piece, so the
# client's first bytes do not wait for the join of everything buffered (dozens of small chunks when the
# gateway read late); the rest follows at once, in the loop.
FIRST_PIECE = 4096


class PassthroughError(Exception):
    """The gateway could not reach the vendor: `kind` is connect|tls|handshake|timeout|reset."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class VendorRefusal(Exception):
    """The vendor refused a WebSocket upgrade: replayed to the client as it came (`body`: up to
    REFUSAL_BODY_MAX bytes of it, when the dial's session reads them: `VendorResponse`)."""

    status: int
    headers: CIMultiDict[str]
    message: str
    body: bytes | None = None


REFUSAL_BODY_MAX = 64 * 1024
# set by `dial_ws` around its `ws_connect`: where `VendorResponse` leaves a refusal's body
_REFUSAL_BODY: contextvars.ContextVar[list[bytes] | None] = contextvars.ContextVar("refusal_body", default=None)


class VendorResponse(aiohttp.ClientResponse):
    """The vendor sessions' response class. aiohttp's `ws_connect` raises on a refused upgrade without
    reading the answer's body (the vendor's error JSON): it is read here first, bounded, for `dial_ws`."""

    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        resp = await super().start(connection)
        holder = _REFUSAL_BODY.get()
        if holder is not None and self.status != 101:
            body = bytearray()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                while len(body) < REFUSAL_BODY_MAX and (chunk := await self.content.read(REFUSAL_BODY_MAX - len(body))):
                    body += chunk
            holder.append(bytes(body))
        return resp


def strip_query(raw: str, names: Iterable[str]) -> str:
    """The raw query string without the named parameters; every other byte is kept as sent. `names` as a
    frozenset: lower-case already."""
    drop = names if isinstance(names, frozenset) else frozenset(n.lower() for n in names)
    if not raw or not drop:
        return raw
    # most queries have nothing encoded: urllib's unquoting (pure Python) only when something is
    decoded = (unquote_plus(raw) if "%" in raw or "+" in raw else raw).lower()
    if _any_of(drop).search(decoded) is None:
        return raw  # no parameter, however encoded, can be one of them (most requests: nothing to split)
    kept = [p for p in raw.split("&") if unquote_plus(p.partition("=")[0]).lower() not in drop]
    return "&".join(kept)


@functools.lru_cache(maxsize=256)
def _any_of(names: frozenset[str]) -> re.Pattern[str]:
    """One search for any of `names` (a regex alternation: one C call, not a generator over the names)."""
    return re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))


@functools.lru_cache(maxsize=256)
def _skipped(drop: frozenset[str], forward_ip: bool, ws: bool) -> frozenset[str]:
    skip = HOP_BY_HOP | drop
    if not forward_ip:
        skip |= FORWARDED
    if ws:
        skip |= WS_HANDSHAKE
    return skip


_NAME = operator.itemgetter(0)


@functools.lru_cache(maxsize=512)
def _picker(names: tuple[str, ...], skip: frozenset[str],
            prefixes: tuple[str, ...]) -> Callable[[list[tuple[str, str]]], Sequence[tuple[str, str]]]:
    """The pairs to keep of a header list with these names (in order), picked in one C call. Remembers
    names only, never values; a tuple or list of pairs, never a generator (multidict would ask a
    generator for `.items()` first and drop an AttributeError each time)."""
    keep = [i for i, k in enumerate(names) if (lk := k.lower()) not in skip and not lk.startswith(prefixes)]
    if len(keep) == len(names):
        return _same
    if len(keep) == 1:
        return lambda pairs: [pairs[keep[0]]]
    return operator.itemgetter(*keep) if keep else _none


def _same(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return pairs


def _none(_: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return []


HeaderPairs = Iterable[tuple[str, str]] | CIMultiDict[str] | CIMultiDictProxy[str]


def _without(headers: HeaderPairs, skip: frozenset[str], prefixes: tuple[str, ...]) -> CIMultiDict[str]:
    """`headers` (a multidict, or pairs) minus the names in `skip` (lower-case), those starting with
    `prefixes` and what `Connection` names; one comprehension (it runs for every relayed request and
    answer, before the bytes move on)."""
    named: Iterable[str] = ()
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        pairs = list(headers.items())
        if "connection" in skip:
            named = headers.getall("connection", ())
    else:
        pairs = list(headers)
        if "connection" in skip:
            named = [v for k, v in pairs if k.lower() == "connection"]
    # which positions stay depends only on the names, the same from one request of a client to the next
    out: CIMultiDict[str] = CIMultiDict(_picker(tuple(map(_NAME, pairs)), skip, prefixes)(pairs))
    for value in named:
        for name in value.split(","):
            if name := name.strip():
                out.popall(name, None)
    return out


def upstream_headers(headers: HeaderPairs, drop: Iterable[str], forward_ip: bool = False,
                     ws: bool = False) -> CIMultiDict[str]:
    """The client's request headers minus hop-by-hop, credentials (`drop`) and the gateway's own."""
    skip = _skipped(drop if isinstance(drop, frozenset) else frozenset(d.lower() for d in drop), forward_ip, ws)
    return _without(headers, skip, ("x-gateway-", "proxy-"))


def response_headers(headers: HeaderPairs) -> CIMultiDict[str]:
    """The vendor's answer headers minus hop-by-hop."""
    return _without(headers, HOP_BY_HOP, ("proxy-",))


def ssl_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """One context per CA file (re-read when the file changes): a context built per request would cost a
    certificate load each time and, being a new pool key, a new connection and TLS handshake each time."""
    if ca_file is None:
        return True
    try:
        stamp = os.stat(ca_file).st_mtime_ns
    except OSError:
        stamp = 0
    return _ssl_context(ca_file, stamp)


@functools.lru_cache(maxsize=16)
def _ssl_context(ca_file: str, _stamp: int) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


_KIND_MESSAGES = {"tls": "TLS error talking to the vendor", "timeout": "The vendor did not answer in time",
                  "connect": "The vendor is unreachable", "reset": "The vendor connection failed"}


def _failure(kind: str) -> PassthroughError:
    return PassthroughError(kind, _KIND_MESSAGES[kind])


def _classify(exc: BaseException) -> PassthroughError:
    """An aiohttp client failure (vendor sockets) as the kind of `PassthroughError` it is."""
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return _failure("tls")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return _failure("timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _failure("connect")
    return _failure("reset")


Observer = Callable[[WSMsgType, bytes], None]


class _Relayed(web.StreamResponse):
    """An answer whose headers wait for its first body write, like aiohttp's own `web.Response`: used only
    when body bytes came in with the vendor's headers, so both leave in one write (one wake-up of the
    client, not two). Should aiohttp drop the attribute, headers simply go out at `prepare()` again."""

    _send_headers_immediately = False


async def proxy_http(request: web.Request, pool: RelayPool, url: str, headers: CIMultiDict[str], *,
                     ssl_opt: ssl.SSLContext | bool, connect_timeout_s: float, read_timeout_s: float,
                     extra_response: dict[str, str] | None = None,
                     on_chunk: Callable[[bytes], None] | None = None,
                     on_first: Callable[[], None] | None = None) -> web.StreamResponse:
    """One request to the vendor, its answer streamed back chunk by chunk as it arrives; `on_chunk`
    sees each chunk after it was written to the client, `on_first` is called once, after the first body
    write (before `on_chunk`). The headers go to the client as soon as the vendor's came, together with
    any body that came with them. `url` was built from the client's raw (already encoded) path and query:
    it is sent as is, not re-quoted."""
    # aiohttp internal: `_read_bytes`, where `request.read()` keeps the body it read (None when missing: the
    # body is then read again from aiohttp's cache by `read()`, or streamed)
    cached = getattr(request, "_read_bytes", None)  # read already (the split looked at a JSON body)
    if cached is None and request.body_exists and (request.content_length or SMALL_BODY + 1) <= SMALL_BODY:
        # a small body of known length (TTS JSON) is needed whole by the vendor anyway: one write, not two
        cached = await request.read()
    body = cached if cached is not None else request.content.iter_any() if request.body_exists else None
    try:
        upstream = await pool.request(request.method, url, headers, body, ssl_opt=ssl_opt,
                                      connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
    except RelayError as exc:
        raise _failure(exc.kind) from None
    try:
        first = upstream.read_nowait(FIRST_PIECE)  # sent with the headers, if anything
        out = (_Relayed if first else web.StreamResponse)(status=upstream.status, reason=upstream.reason,
                                                          headers=response_headers(upstream.headers))
        if extra_response:
            out.headers.update(extra_response)
        await out.prepare(request)

        def written(chunk: bytes) -> None:
            nonlocal on_first
            if on_first is not None:
                on_first()
                on_first = None
            if on_chunk is not None:
                on_chunk(chunk)

        try:
            if first:
                await out.write(first)
                written(first)
            while chunk := await upstream.read():
                await out.write(chunk)
                written(chunk)
        except (RelayError, OSError):
            # the vendor broke off mid-answer (or the client left): the client sees the same, a truncated body
            if request.transport is not None:
                request.transport.close()
            return out
        await out.write_eof()
        return out
    finally:
        upstream.release()  # back to the pool after a whole answer, else closed


async def dial_ws(session: aiohttp.ClientSession, url: str, headers: CIMultiDict[str], protocols: list[str], *,
                  ssl_opt: ssl.SSLContext | bool, connect_timeout_s: float,
                  max_msg_size: int) -> aiohttp.ClientWebSocketResponse:
    """The vendor's socket, or `VendorRefusal` (its status, headers and body) / `PassthroughError`."""
    refused: list[bytes] = []
    token = _REFUSAL_BODY.set(refused)
    try:
        # `encoded`: the client's raw path as it came (`%2e` stays `%2e`, no dot segment removed), as the
        # REST relay sends it
        return await asyncio.wait_for(session.ws_connect(
            URL(url, encoded=True), headers=headers, protocols=protocols, ssl=ssl_opt, autoping=True, autoclose=False,
            compress=0, max_msg_size=max_msg_size, decode_text=False,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S)), connect_timeout_s)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status and exc.status != 101:
            body = refused[0] if refused else None
            message = body.decode("utf-8", "replace")[:300] if body else exc.message
            raise VendorRefusal(exc.status, CIMultiDict(exc.headers or {}), message, body) from None
        raise PassthroughError("handshake", "The vendor's WebSocket handshake failed") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _classify(exc) from None
    except ValueError:  # aiohttp refuses a header value with a line break (a forged credential): bad input
        raise GatewayError("invalid_request", "A credential or header holds a line break") from None
    finally:
        _REFUSAL_BODY.reset(token)


def refusal_response(refusal: VendorRefusal) -> web.Response:
    headers = response_headers(refusal.headers)
    for h in ("content-length", "content-encoding"):
        headers.popall(h, None)
    if refusal.body is not None:
        return web.Response(status=refusal.status, headers=headers, body=refusal.body)
    return web.Response(status=refusal.status, headers=headers, text=refusal.message or None)


_FORWARD_TYPES = {WSMsgType.TEXT, WSMsgType.BINARY}


async def _pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                observe: Observer | None) -> tuple[int | None, bytes]:
    """Frames from `src` to `dst` with their type and bytes (`observe` sees each one after it was
    forwarded); returns the close code and reason seen."""
    while True:
        msg = await src.receive()
        if msg.type in _FORWARD_TYPES:
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            await dst.send_frame(data, msg.type)
            if observe is not None:
                observe(msg.type, data)
        elif msg.type == WSMsgType.CLOSE:
            reason = msg.extra.encode() if isinstance(msg.extra, str) else (msg.extra or b"")
            return msg.data, reason
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return src.close_code, b""


def _sendable(code: int | None) -> int:
    """Codes that only describe a missing or broken close frame cannot be sent on: 1000 instead."""
    return code if code and code not in (1005, 1006, 1015) else 1000


async def relay_ws(client: web.WebSocketResponse, vendor: aiohttp.ClientWebSocketResponse,
                   on_in: Observer | None = None, on_out: Observer | None = None) -> tuple[str, int | None]:
    """Two pumps; the first to finish closes the other side with the code and reason it saw, then both are
    cancelled (the LiteLLM `ws_handler` shape). Returns which side ended first and its close code."""
    up = asyncio.create_task(_pump(client, vendor, on_in), name="client->vendor")
    down = asyncio.create_task(_pump(vendor, client, on_out), name="vendor->client")
    ended, code = "client", None
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        first = up if up in done else down
        ended = "client" if first is up else "vendor"
        result = first.result() if not first.exception() else (None, b"")
        code, reason = result
        other_ws = vendor if first is up else client
        with contextlib.suppress(Exception):
            await asyncio.wait_for(other_ws.close(code=_sendable(code), message=reason), CLOSE_TIMEOUT_S)
    finally:
        for t in (up, down):
            t.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        with contextlib.suppress(Exception):
            await vendor.close()
    return ended, code
