"""The split, in front of every mapping route: decide once per unit, then run the translated session
(target `gradium`) or the passthrough (target `legacy`). Nothing about targets enters the translation runtime.

A unit is one REST request or one WebSocket; the decision is made before its upstream call (before the 101
on sockets) and never changes inside it. `x-gateway-target` marks every answer the router decided.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from gateway.addons import ADDONS, Tap
from gateway.auth import find_credential
from gateway.config import Settings
from gateway.dialects.common import AUTH, METRICS, RequestContext, http_error
from gateway.dialects.http import Handler
from gateway.errors import GatewayError
from gateway.events import Flow, new_request_id
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.observability import debug_enabled
from gateway.session.refuse import refusal, refusal_response
from gateway.state import SHARED_STATE
from gateway.traffic import legacy, own_ids
from gateway.traffic.identity import Caller, identify
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.policy import Decision, Unit, decide, legacy_possible
from gateway.traffic.replay import replay_first
from gateway.traffic.settings import Target
from gateway.traffic.shadow import PLAN, Shadow
from gateway.traffic.shadow_addon import ShadowAddon
from gateway.traffic.stitching import Stitching
from gateway.traffic.tee import BodyTee
from gateway.upstream.passthrough import PassthroughError

log = structlog.get_logger("gateway")
TARGET_HEADER = "x-gateway-target"
_UNIT = "gateway.traffic.unit"  # request key: (target, response id header) for the response hook
_JSON_BODY = "gateway.traffic.json_body"  # request key: the JSON body, parsed once (`_json_body`)
TOKEN_BUILTINS = frozenset({"mint_token", "grant_token"})
_NO_RAMPS = datetime(2000, 1, 1, tzinfo=UTC)  # `now` for a decision no ramp depends on


def config_version(settings: Settings) -> str:
    blob = orjson.dumps({"traffic": settings.traffic.model_dump(mode="json"),
                         "shadow": settings.shadow.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:12]


class Traffic:
    """Per app: the settings snapshot, the vendor HTTP client, stitching memory and metrics."""

    def __init__(self, settings: Settings, metrics: TrafficMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.version = config_version(settings)
        self.active = legacy_possible(settings.traffic) or any(k.allow_overrides for k in settings.auth.keys)
        self.session: aiohttp.ClientSession | None = None
        self.stitching = Stitching()
        self.shadow: Shadow | None = None
        self.active = self.active or settings.shadow.enabled
        # the clock is read for a decision only when some weight depends on it
        self.ramps = any(rule.ramp for rule in settings.traffic.rules)


TRAFFIC = web.AppKey("traffic", Traffic)


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    # its own client: no decompression, and the vendor's connections never mix with Gradium's pool
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    # no cookie jar: a vendor's Set-Cookie goes back to the client that caused it, never into another
    # tenant's next request (and no cookie filtering per request)
    app[TRAFFIC].session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                 cookie_jar=aiohttp.DummyCookieJar())
    try:
        yield
    finally:
        await app[TRAFFIC].stitching.close()
        if app[TRAFFIC].shadow is not None:
            await app[TRAFFIC].shadow.close()
        await app[TRAFFIC].session.close()  # type: ignore[union-attr]


async def _mark_answer(request: web.Request, response: web.StreamResponse) -> None:
    unit = request.get(_UNIT)
    if unit is None:
        return
    target, id_header = unit
    traffic = request.app[TRAFFIC]
    if traffic.settings.traffic.expose_target_header:
        response.headers[TARGET_HEADER] = target
    if id_header and (rid := response.headers.get(id_header)):
        traffic.stitching.remember(rid, target)


def install(app: web.Application, settings: Settings) -> None:
    traffic = app[TRAFFIC] = Traffic(settings, TrafficMetrics(app[METRICS].registry, config_version(settings)))
    if settings.state.redis_url:  # continuation ids are recognized on every replica
        traffic.stitching.shared = app[SHARED_STATE]
    if settings.shadow.enabled:
        traffic.shadow = Shadow(app, settings.shadow, traffic.metrics, settings.legacy, lambda: traffic.session,
                                app[SHARED_STATE])
        traffic.shadow.version = traffic.version
        app[ADDONS].register(ShadowAddon(traffic.shadow))
    app.cleanup_ctx.append(_session_ctx)
    app.on_response_prepare.append(_mark_answer)


def route_class(route: CompiledRoute) -> str:
    if route.spec.gradium is not None:
        return "speech"
    return "token" if route.spec.builtin in TOKEN_BUILTINS else "catalogue"


def wrap(mapping: CompiledMapping, route: CompiledRoute, handler: Handler) -> Handler:
    """The route's handler behind the split; token routes are always the gateway's own."""
    cls = route_class(route)
    if cls == "token" or mapping.legacy is None:
        return handler
    leg = legacy.LegacyLeg(mapping, route, "gw_session")
    kind = "tts" if route.spec.gradium is not None and route.spec.gradium.kind == "tts" else "stt"
    transport = "ws" if route.is_ws else "rest"
    id_header = mapping.legacy.response_id_header
    id_sources = own_ids.sources(mapping, route)
    id_body_fields = own_ids.body_fields(id_sources)

    async def handle(request: web.Request) -> web.StreamResponse:
        traffic = request.app[TRAFFIC]
        if not traffic.active:
            return await handler(request)
        req = RequestData(path=request.match_info, query=request.query, header=request.headers)
        cred = find_credential(mapping.credentials, req)
        first: tuple[web.WebSocketResponse, bytes, bytes] | None = None
        if cls == "speech" and cred is None and leg.first_message_credentials:
            # the key (hence the tenant) is in the first message: accept, read it, then decide
            client, raw, stripped, cred = await legacy.accept_first(request, leg, RequestContext(mapping, route))
            if raw is None:
                return client
            first = (client, raw, stripped)
        caller = identify(request.app[AUTH], cred)
        unit = Unit(mapping.provider, route.name, kind, transport, caller.tenant,
                    keys=await _sticky_keys(request, mapping, traffic, caller) if cls == "speech" else {},
                    stitched=await _stitched(request, mapping, traffic) if cls == "speech" else None,
                    own_object=cls == "speech" and await _own_object(request, id_sources, id_body_fields, cred,
                                                                          caller),
                    override=_override(request, caller))
        decision = decide(traffic.settings.traffic, unit, datetime.now(UTC) if traffic.ramps else _NO_RAMPS)
        if cls == "catalogue" and decision.reason not in ("serve", "override"):
            return await handler(request)  # catalogues follow only `serve: legacy`
        # a REST unit the vendor serves counts its assignment once its request is on the way (`serve_legacy`)
        deferred = decision.target == "legacy" and first is None and transport == "rest"
        if not deferred:
            _assigned(traffic, mapping.provider, route.name, decision)
        request[_UNIT] = (decision.target, id_header)
        plan = None
        if traffic.shadow is not None and cls == "speech":
            keys = shadow_keys(traffic.settings, caller, cred, mapping.provider)
            forced = caller.allow_overrides and request.headers.get("X-Gateway-Shadow", "").strip() == "1"
            plan = traffic.shadow.plan(unit, decision.target, mapping, route, request, keys, forced,
                                       reason=decision.reason)
            if plan is not None and not route.is_ws:
                plan.body = _shadow_body(request, traffic)
                if plan.body is None:
                    for each in (plan, plan.noise) if plan.noise is not None else (plan,):
                        traffic.shadow.count(each, each.side, "dropped_overflow")
                    plan = None
        token = PLAN.set(plan) if plan is not None else None
        try:
            if first is not None:
                if decision.target == "gradium":
                    return await replay_first(request, mapping, route, first[0], first[1])
                return await serve_legacy(leg, request, traffic, cred, decision, handler, (first[0], first[2]))
            if decision.target == "gradium":
                return await handler(request)
            return await serve_legacy(leg, request, traffic, cred, decision, handler, req=req, assign=deferred)
        finally:
            if token is not None:
                PLAN.reset(token)
            if plan is not None and isinstance(plan.body, BodyTee):
                await plan.body.close()

    return handle


async def serve_legacy(leg: legacy.LegacyLeg, request: web.Request, traffic: Traffic, cred: Any,
                       decision: Decision, fallback: Handler | None,
                       accepted: tuple[web.WebSocketResponse, bytes] | None = None,
                       req: RequestData | None = None, assign: bool = False) -> web.StreamResponse:
    """One unit from the vendor; `fallback` (the Gradium handler) serves it when `decision.failover` allows.
    `req`: path, query and headers, if read already; `assign`: the assignment is yet to count. A REST unit's
    bookkeeping (request id, log context, assignment, `session_start`) waits for its first body bytes to be
    written to the client (or for an earlier end): the vendor's request and the first bytes do not wait."""
    mapping = leg.mapping
    http = not leg.is_ws
    ctx = RequestContext(mapping, leg.error_route, request_id="" if http else new_request_id())
    ctx.req = req or RequestData(path=request.match_info, query=request.query, header=request.headers)
    vendor = traffic.settings.legacy.get(mapping.provider)
    extra = {TARGET_HEADER: "legacy"} if traffic.settings.traffic.expose_target_header else {}
    assert traffic.session is not None
    flow = Flow(mapping.provider, leg.name, "http" if http else "ws", target="legacy", request_id=ctx.request_id,
                started=ctx.started)
    tap = Tap(request.app[ADDONS], flow)
    settled = [False]

    def settle() -> None:
        if settled[0]:
            return
        settled[0] = True
        if http:  # a random id costs a system call: it waited too
            ctx.request_id = flow.request_id = new_request_id()
        structlog.contextvars.bind_contextvars(request_id=ctx.request_id, provider=mapping.provider,
                                               route=leg.name, target="legacy")
        if assign:
            _assigned(traffic, mapping.provider, leg.name, decision)
        if flow.data.get("passthrough"):
            tap.start()

    if not http:
        settle()
    status, end = "internal", {}
    try:
        if vendor is None:
            raise PassthroughError("connect", f"No legacy base URL for {mapping.provider}")
        if leg.is_ws:
            resp = await legacy.serve_ws(leg, request, ctx, traffic.session, vendor, cred, traffic.metrics, extra,
                                         tap, accepted)
        else:
            resp = await legacy.serve_http(leg, request, ctx, traffic.session, vendor, cred, traffic.metrics, extra,
                                           tap, settle)
        status, end = _end_status(resp, flow)
        return resp
    except PassthroughError as exc:
        settle()
        status = exc.kind
        # nothing reached the client yet: the vendor was never reached
        if decision.failover and fallback is not None and accepted is None:
            traffic.metrics.passthrough_errors.labels(mapping.provider, exc.kind).inc()
            traffic.metrics.assigned(mapping.provider, leg.name, "gradium", "failover")
            request[_UNIT] = ("gradium", request[_UNIT][1])
            log.info("traffic.failover", kind=exc.kind, to="gradium")
            return await fallback(request)
        return legacy.gateway_failure(ctx, exc, traffic.metrics)
    except GatewayError as err:  # the gateway's own verdict (credentials), in the dialect's shape
        settle()
        if leg.route is not None and leg.is_ws and not mapping.errors.refuse_upgrade:
            return await legacy.refuse_in_socket(request, ctx, err, extra)
        resp = _refuse_upgrade(ctx, err) if leg.is_ws else http_error(ctx, err)
        resp.headers.update(extra)
        return resp
    finally:
        settle()
        if flow.data.get("passthrough"):
            tap.end(status, **end)
        structlog.contextvars.unbind_contextvars("request_id", "provider", "route", "target")


def _assigned(traffic: Traffic, provider: str, route: str, decision: Decision) -> None:
    traffic.metrics.assigned(provider, route, decision.target, decision.reason)
    if debug_enabled():
        log.debug("traffic.assign", target=decision.target, reason=decision.reason, bucket=decision.bucket,
                  weight=decision.weight, config_version=traffic.version)


def _end_status(resp: web.StreamResponse, flow: Flow) -> tuple[str, dict[str, Any]]:
    if flow.transport == "http" or "passthrough_close" not in flow.data:
        return str(resp.status), {"http_status": resp.status}
    ended, code = flow.data["passthrough_close"]
    status = "client_closed" if ended == "client" else "ok" if code in (1000, None) else f"closed_{code}"
    return status, {"close_code": code}


def _refuse_upgrade(ctx: RequestContext, err: GatewayError) -> web.Response:
    return refusal_response(refusal(ctx, err))


async def _sticky_keys(request: web.Request, mapping: CompiledMapping, traffic: Traffic,
                       caller: Caller) -> dict[str, str]:
    t = traffic.settings.traffic
    keys: dict[str, str] = {}
    for h in t.session_headers:
        if v := request.headers.get(h):
            keys["header"] = v
            break
    else:
        if v := request.query.get(t.session_query):
            keys["header"] = v
    assert mapping.legacy is not None
    for native in mapping.legacy.native_sticky:
        kind, _, name = native.source.partition(".")
        values = request.query.getall(name, []) if kind == "query" else [request.headers.get(name, "")]
        if native.pairs:
            prefix = t.native_extra_key + ":"
            values = [v[len(prefix):] for v in values if v.startswith(prefix)]
        if value := next((v for v in values if v), None):
            keys["native"] = value
            break
    if caller.identity:
        keys["credential"] = caller.identity
    return keys


async def _own_object(request: web.Request, id_sources: tuple[own_ids.Source, ...], body_fields: tuple[bytes, ...],
                      cred: Any, caller: Caller) -> bool:
    if not id_sources:
        return False
    ids_caller = own_ids.ids_caller(request.app[AUTH], cred, caller.tenant)
    body = None
    if ids_caller is not None and body_fields and await _body_may_name(request, body_fields):
        body = await _json_body(request)
    return own_ids.names_own_object(request, id_sources, body, ids_caller)


async def _body_may_name(request: web.Request, fields: tuple[bytes, ...]) -> bool:
    if request.method != "POST" or request.content_type != "application/json":
        return False  # `_json_body` would give None
    try:
        return own_ids.may_name(await request.read(), fields)
    except Exception:
        return True  # `_json_body` decides (and gives None)


async def _stitched(request: web.Request, mapping: CompiledMapping, traffic: Traffic) -> Target | None:
    """ElevenLabs `previous_request_ids`: the body is read (and cached by aiohttp for the handler)."""
    assert mapping.legacy is not None
    field = mapping.legacy.stitching
    if not field or request.method != "POST" or request.content_type != "application/json":
        return None
    name = field.partition(".")[2]
    with contextlib.suppress(Exception):
        if (await request.read()).find(name.encode()) < 0:  # `find`: see own_ids.may_name
            return None  # most requests continue nothing: no JSON parse for them
    body = await _json_body(request)
    ids = body.get(name) if isinstance(body, dict) else None
    if isinstance(ids, list) and ids:
        with contextlib.suppress(Exception):  # no verdict from the shared state: the split decides
            return await traffic.stitching.side_of(ids)
    return None


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, parsed once for every look the split takes (None: not JSON, or unreadable;
    the handler then answers it). aiohttp keeps the bytes for the handler."""
    if _JSON_BODY not in request:
        body = None
        if request.method == "POST" and request.content_type == "application/json":
            with contextlib.suppress(Exception):
                body = orjson.loads(await request.read())
        request[_JSON_BODY] = body
    return request[_JSON_BODY]


def _shadow_body(request: web.Request, traffic: Traffic) -> bytes | BodyTee | None:
    """The body a REST shadow repeats, within `shadow.max_body_bytes`: as read already (a JSON body the
    split looked at), else a copy taken while the primary reads it (uploads stream on undisturbed)."""
    limit = traffic.settings.shadow.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return None
    cached: bytes | None = getattr(request, "_read_bytes", None)
    if cached is not None:
        return cached if len(cached) <= limit else None
    return BodyTee(request, limit)


def shadow_keys(settings: Settings, caller: Caller, cred: Any, provider: str) -> dict[str, str]:
    """The keys a shadow leg may use, per side: the tenant's `shadow_keys`, or with `allow_shared_keys`
    its production keys (forward mode: the caller's own credential)."""
    out: dict[str, str] = {}
    shared = settings.shadow.allow_shared_keys
    tenant = settings.auth.tenants.get(caller.tenant) if caller.tenant else None
    if tenant is not None:
        for side, name in (("gradium", "gradium"), ("legacy", provider)):
            if (k := tenant.shadow_keys.get(name)) is not None:
                out[side] = k.get_secret_value()
        if shared:
            if "gradium" not in out and tenant.gradium_api_key is not None:
                out["gradium"] = tenant.gradium_api_key.get_secret_value()
            if "legacy" not in out and (k := tenant.legacy_keys.get(provider)) is not None:
                out["legacy"] = k.get_secret_value()
    elif shared and cred is not None and settings.auth.mode == "forward":
        vendor = settings.legacy.get(provider)
        out["gradium"] = cred.value
        out["legacy"] = vendor.api_key.get_secret_value() if vendor and vendor.api_key else cred.value
    return out


def _override(request: web.Request, caller: Caller) -> Target | None:
    if not caller.allow_overrides:
        return None
    value = request.headers.get("X-Gateway-Target", "").strip().lower()
    return value if value in ("gradium", "legacy") else None  # type: ignore[return-value]
