"""Serving a unit from the legacy vendor: credentials swapped per the mapping's facts, then relayed.

The mapping's `credentials:` list says where a client may put its key (every such position is stripped)
and its `legacy:` section how the vendor wants its key. Gateway failures are the dialect's own 502/503
with `Retry-After`; vendor answers and refusals are replayed untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from gateway.addons import Tap
from gateway.auth import Credential, find_credential
from gateway.dialects.common import AUTH, SETTINGS, RequestContext, error_scope, http_error
from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.traffic.identity import vendor_key
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.settings import LegacyVendor
from gateway.upstream.passthrough import (
    PassthroughError,
    VendorRefusal,
    dial_ws,
    proxy_http,
    refusal_response,
    relay_ws,
    ssl_context,
    strip_query,
    upstream_headers,
)
from gateway.upstream.relay import RelayPool

log = structlog.get_logger("gateway")
FIRST_MESSAGE_TIMEOUT_S = 20.0
_REFUSAL_KINDS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}


@dataclass(slots=True)
class CredentialPositions:
    headers: list[str]
    query: list[str]
    message: list[str]
    subprotocol: bool

    @classmethod
    def of(cls, mapping: CompiledMapping) -> CredentialPositions:
        out = cls([], [], [], False)
        for src in mapping.credentials:
            kind, _, name = src.source.partition(".")
            if src.subprotocol:
                out.subprotocol = True
            elif kind == "header":
                out.headers.append(name)
            elif kind == "query":
                out.query.append(name)
            elif kind == "message":
                out.message.append(name)
        return out


class LegacyLeg:
    """Everything needed to relay one route of one mapping; built once at start-up. `route` None: a path
    under the provider's prefix that no mapping route serves (`fallthrough: legacy`), `ws` says its kind."""

    def __init__(self, mapping: CompiledMapping, route: CompiledRoute | None, session_query: str,
                 ws: bool = False) -> None:
        assert mapping.legacy is not None
        self.mapping = mapping
        self.route = route
        self.name = route.name if route is not None else "fallthrough"
        self.is_ws = route.is_ws if route is not None else ws
        # the route whose error shapes a refusal uses (any route of the provider for a fallthrough)
        self.error_route = route if route is not None else next(iter(mapping.routes.values()))
        self.facts = mapping.legacy
        self.positions = CredentialPositions.of(mapping)
        self.drop_headers = frozenset(h.lower() for h in self.positions.headers)
        self.strip_query_names = frozenset(n.lower() for n in [*self.positions.query, session_query])
        self.prefix = f"/{mapping.provider}"
        ws = route.ws if route is not None else None
        # ElevenLabs: the key may come in the first message, read after the upgrade
        self.first_message_credentials = bool(self.positions.message) and ws is not None \
            and ws.spec.open == "first_message"

    def target_url(self, request: web.Request, vendor: LegacyVendor, ws: bool, drop_query: list[str]) -> str:
        path = request.rel_url.raw_path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            path = path[len(self.prefix):] or "/"
        names = self.strip_query_names | {n.lower() for n in drop_query} if drop_query else self.strip_query_names
        query = strip_query(request.rel_url.raw_query_string, names)
        base = vendor.ws_url if ws else vendor.base_url
        return base + path + ("?" + query if query else "")

    def vendor_headers(self, request: web.Request, vendor: LegacyVendor, key: str, ws: bool) -> CIMultiDict[str]:
        headers = upstream_headers(request.headers, self.drop_headers, vendor.forward_client_ip, ws=ws)
        if vendor.forward_client_ip and request.remote:
            headers.add("X-Forwarded-For", request.remote)
        headers[self.facts.auth_header] = self.facts.auth_value.replace("$key", key)
        return headers


def gateway_failure(ctx: RequestContext, exc: PassthroughError, metrics: TrafficMetrics) -> web.Response:
    """The dialect's own 502 (TLS, reset) or 503 (unreachable, timeout), always with `Retry-After`."""
    metrics.passthrough_errors.labels(ctx.mapping.provider, exc.kind).inc()
    log.warning("passthrough.error", kind=exc.kind, message=exc.message)
    kind = "upstream_unavailable" if exc.kind in ("connect", "timeout") else "upstream_error"
    resp = http_error(ctx, GatewayError(kind, exc.message))
    resp.headers.setdefault("Retry-After", "1")
    return resp


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def begin(tap: Tap) -> None:
    tap.flow.data["passthrough"] = True  # the session started: the router owes it a `session_end`
    tap.start()


def observers(tap: Tap) -> tuple[Any, Any]:
    """Frame observers feeding the session events; text is decoded only when some addon watches this
    session (with shadowing on, only the sampled sessions are watched: the others pay nothing per frame)."""

    def on_in(kind: WSMsgType, data: bytes) -> None:
        if tap.frame_hooks:
            tap.frame(_text(data) if kind == WSMsgType.TEXT else data)
        else:
            tap.frames_in += 1

    def on_out(kind: WSMsgType, data: bytes) -> None:
        tap.output(_text(data) if kind == WSMsgType.TEXT and tap.output_hooks else data)

    return on_in, on_out


async def serve_http(leg: LegacyLeg, request: web.Request, ctx: RequestContext, pool: RelayPool,
                     vendor: LegacyVendor, cred: Credential | None, metrics: TrafficMetrics,
                     extra: dict[str, str], tap: Tap, settle: Callable[[], None]) -> web.StreamResponse:
    """`settle`: the request's bookkeeping, `session_start` included, run after its first body write."""
    auth = request.app[AUTH]
    key = await vendor_key(auth, cred, ctx.mapping.provider, leg.name, _configured(vendor))
    url = leg.target_url(request, vendor, ws=False, drop_query=[])
    headers = leg.vendor_headers(request, vendor, key, ws=False)
    tap.flow.data["passthrough"] = True  # the router owes it a `session_end` (and `settle` a `session_start`)
    resp = await proxy_http(request, pool, url, headers, ssl_opt=ssl_context(vendor.ca_file),
                            connect_timeout_s=vendor.connect_timeout_s, read_timeout_s=vendor.read_timeout_s,
                            extra_response=extra, on_chunk=tap.output, on_first=settle)
    tap.upstream_request_id = resp.headers.get(leg.facts.response_id_header or ctx.mapping.request_id_header or "")
    metrics.passthrough.labels(ctx.mapping.provider, leg.name, str(resp.status)).inc()
    return resp


def _configured(vendor: LegacyVendor) -> str | None:
    return vendor.api_key.get_secret_value() if vendor.api_key else None


def _offered(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


async def serve_ws(leg: LegacyLeg, request: web.Request, ctx: RequestContext, session: aiohttp.ClientSession,
                   vendor: LegacyVendor, cred: Credential | None, metrics: TrafficMetrics,
                   extra: dict[str, str], tap: Tap,
                   accepted: tuple[web.WebSocketResponse, bytes] | None = None) -> web.StreamResponse:
    """Dial the vendor first, accept the client after its 101; credentials in the first message
    (ElevenLabs) are read after accepting, then stripped from that message (the only one re-serialized)."""
    limits = request.app[SETTINGS].limits
    auth = request.app[AUTH]
    provider = ctx.mapping.provider
    offered = _offered(request)
    answer: str | None = None
    to_vendor = offered
    if cred is not None and cred.subprotocol is not None:
        answer, to_vendor = cred.subprotocol, []  # `token, K`: the gateway itself answers `token`
    url = leg.target_url(request, vendor, ws=True, drop_query=[])
    opts = {"ssl_opt": ssl_context(vendor.ca_file), "connect_timeout_s": vendor.connect_timeout_s,
            "max_msg_size": limits.max_ws_message_bytes}
    first: bytes | None = None
    client: web.WebSocketResponse | None = None
    if accepted is not None or (leg.first_message_credentials and cred is None):
        if accepted is None:
            client = _client_socket(offered[:1] if offered else [], limits.max_ws_message_bytes, extra)
            await client.prepare(request)
        else:
            client, first = accepted
        try:
            if accepted is None:
                _, first, cred = await _first_message(client, leg)
            key = await vendor_key(auth, cred, provider, leg.name, _configured(vendor))
            vendor_ws = await dial_ws(session, url, leg.vendor_headers(request, vendor, key, ws=True), to_vendor,
                                      **opts)
        except GatewayError as err:
            await _in_socket_error(client, ctx, err)
            return client
        except VendorRefusal as refusal:
            await _in_socket_error(client, ctx, GatewayError(_REFUSAL_KINDS.get(refusal.status, "upstream_error"),
                                                             refusal.message or "Refused by the vendor"))
            return client
        except PassthroughError as exc:
            metrics.passthrough_errors.labels(provider, exc.kind).inc()
            await _in_socket_error(client, ctx, GatewayError("upstream_unavailable", exc.message))
            return client
    else:
        key = await vendor_key(auth, cred, provider, leg.name, _configured(vendor))
        if not web.WebSocketResponse().can_prepare(request).ok:
            # not an upgrade (a plain GET, a body): refused in the dialect's shape (`app._json_errors`) after
            # the credentials, as the translated path refuses it; a dial would send the vendor an upgrade
            # made of this request
            raise web.HTTPBadRequest(text="This endpoint takes a WebSocket: the request is not an upgrade")
        try:
            vendor_ws = await dial_ws(session, url, leg.vendor_headers(request, vendor, key, ws=True), to_vendor,
                                      **opts)
        except VendorRefusal as refusal:
            log.info("passthrough.refused", status=refusal.status)
            metrics.passthrough.labels(provider, leg.name, str(refusal.status)).inc()
            resp = refusal_response(refusal)
            resp.headers.update(extra)
            return resp
        if answer is None and vendor_ws.protocol:
            answer = vendor_ws.protocol
        client = _client_socket([answer] if answer else [], limits.max_ws_message_bytes, extra)
        client.headers.update(_handshake_headers(vendor_ws))
        try:
            await client.prepare(request)
        except BaseException:
            await vendor_ws.close()
            raise
    begin(tap)
    tap.upstream_request_id = ws_request_id(vendor_ws, ctx.mapping)  # a shadow pair's primary leg records it
    on_in, on_out = observers(tap)
    if first is not None:
        await vendor_ws.send_frame(first, WSMsgType.TEXT)
        on_in(WSMsgType.TEXT, first)
    ended, code = await relay_ws(client, vendor_ws, on_in, on_out)
    metrics.passthrough.labels(provider, leg.name, str(code or "")).inc()
    tap.flow.data["passthrough_close"] = (ended, code)
    return client


async def refuse_in_socket(request: web.Request, ctx: RequestContext, err: GatewayError,
                           extra: dict[str, str]) -> web.WebSocketResponse:
    """Dialects that refuse inside the socket (ElevenLabs, Cartesia): accept, send the error, close."""
    client = _client_socket(_offered(request)[:1], request.app[SETTINGS].limits.max_ws_message_bytes, extra)
    await client.prepare(request)
    ws = ctx.route.ws
    if ws is not None and ws.spec.open == "first_message":
        # like the translated path: the verdict comes as the answer to the client's first message
        with contextlib.suppress(Exception):
            await client.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
    await _in_socket_error(client, ctx, err)
    return client


def _client_socket(protocols: list[str], max_msg: int, extra: dict[str, str]) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=protocols, compress=False, max_msg_size=max_msg, autoping=True,
                               autoclose=False, decode_text=False)
    ws.headers.update(extra)
    return ws


# aiohttp internal: a client socket's `_response`, its 101 (aiohttp has no public accessor for the upgrade's
# headers); missing, the vendor's request id and 101 headers are simply not relayed
def ws_request_id(vendor_ws: aiohttp.ClientWebSocketResponse, mapping: CompiledMapping) -> str | None:
    """The vendor's request id of a socket, from its 101 (Deepgram `dg-request-id`), when it sends one."""
    resp: Any = getattr(vendor_ws, "_response", None)
    header = (mapping.legacy.response_id_header if mapping.legacy else None) or mapping.request_id_header
    return resp.headers.get(header) if resp is not None and header else None


def _handshake_headers(vendor_ws: aiohttp.ClientWebSocketResponse) -> CIMultiDict[str]:
    """The vendor's own 101 headers (`dg-request-id` ...), minus the handshake's mechanics."""
    resp: Any = getattr(vendor_ws, "_response", None)
    if resp is None:
        return CIMultiDict()
    skip = {"connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions",
            "date", "server", "content-length", "transfer-encoding"}
    return CIMultiDict((k, v) for k, v in resp.headers.items() if k.lower() not in skip)


async def accept_first(request: web.Request, leg: LegacyLeg, ctx: RequestContext
                       ) -> tuple[web.WebSocketResponse, bytes | None, bytes, Credential | None]:
    """Accept a socket whose credential may come in its first message and read that message: (client,
    the message as sent, the message without credentials, the credential); the message is None when
    the socket was answered with the dialect's in-socket error."""
    limits = request.app[SETTINGS].limits
    client = _client_socket(_offered(request)[:1], limits.max_ws_message_bytes, {})
    await client.prepare(request)
    try:
        return (client, *await _first_message(client, leg))
    except GatewayError as err:
        await _in_socket_error(client, ctx, err)
        return client, None, b"", None


async def _first_message(client: web.WebSocketResponse, leg: LegacyLeg
                         ) -> tuple[bytes, bytes, Credential | None]:
    try:
        msg = await client.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
    except TimeoutError:
        raise GatewayError("idle_timeout", "No initial message received") from None
    if msg.type != WSMsgType.TEXT:
        raise GatewayError("invalid_message", "The first message must be a JSON text frame")
    raw = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError("invalid_json", "The first message is not valid JSON") from None
    if not isinstance(body, dict):
        return raw, raw, None
    cred = find_credential(leg.mapping.credentials, RequestData(message=body))
    if not any(name in body for name in leg.positions.message):
        return raw, raw, cred
    for name in leg.positions.message:
        body.pop(name, None)
    return raw, orjson.dumps(body), cred


async def _in_socket_error(client: web.WebSocketResponse, ctx: RequestContext, err: GatewayError) -> None:
    spec = ctx.mapping.errors.kinds[err.kind]
    tpl = ctx.mapping.errors.ws_message
    log.info("passthrough.ws_error", kind=err.kind, message=err.message)
    with contextlib.suppress(ConnectionResetError):  # the client may be gone already: nobody left to tell
        if tpl is not None:
            await client.send_frame(orjson.dumps(tpl(error_scope(ctx, err))), WSMsgType.TEXT)
        await client.close(code=spec.close, message=(spec.reason or "").encode()[:120])
