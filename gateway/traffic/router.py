"""The split, in front of every mapping route: decide once per unit, then run the translated session
(target `gradium`) or the passthrough (target `legacy`). Nothing about targets enters the translation runtime.

A unit is one REST request or one WebSocket; the decision is made before its upstream call (before the 101
on sockets) and never changes inside it. `x-gateway-target` marks every answer the router decided.
"""

from __future__ import annotations

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
from gateway.events import NOT_UPGRADED, Flow, new_request_id
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.observability import debug_enabled
from gateway.session.refuse import refusal, refusal_response
from gateway.state import SHARED_STATE
from gateway.traffic import legacy
from gateway.traffic.identity import identify
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.policy import Decision, Unit, decide, legacy_possible
from gateway.traffic.replay import replay_first
from gateway.traffic.shadow import PLAN, Shadow
from gateway.traffic.shadow_addon import ShadowAddon
from gateway.traffic.stitching import Stitching
from gateway.traffic.tee import BodyTee
from gateway.traffic.unit_facts import (
    RouteFacts,
    is_json_post,
    override,
    own_object,
    route_class,
    shadow_body,
    shadow_keys,
    sticky_keys,
    stitched,
)
from gateway.upstream.passthrough import PassthroughError, VendorResponse
from gateway.upstream.relay import RelayPool

log = structlog.get_logger("gateway")
TARGET_HEADER = "x-gateway-target"
_UNIT = "gateway.traffic.unit"  # request key: (target, response id header) for the response hook
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
        self.session: aiohttp.ClientSession | None = None  # vendor sockets and shadow legs
        self.relay = RelayPool()  # REST passthrough
        self.stitching = Stitching()
        self.shadow: Shadow | None = None
        self.active = self.active or settings.shadow.enabled
        # the clock is read for a decision only when some weight depends on it
        self.ramps = any(rule.ramp for rule in settings.traffic.rules)
        # the headers every answer of the vendor gets (read, never changed, by each unit)
        self.legacy_extra = {TARGET_HEADER: "legacy"} if settings.traffic.expose_target_header else {}


TRAFFIC = web.AppKey("traffic", Traffic)


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    # its own client: no decompression, and the vendor's connections never mix with Gradium's pool
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    # no cookie jar: a vendor's Set-Cookie goes back to the client that caused it, never into another
    # tenant's next request (and no cookie filtering per request)
    app[TRAFFIC].session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                 cookie_jar=aiohttp.DummyCookieJar(), response_class=VendorResponse)
    try:
        yield
    finally:
        await app[TRAFFIC].stitching.close()
        if app[TRAFFIC].shadow is not None:
            await app[TRAFFIC].shadow.close()
        await app[TRAFFIC].session.close()  # type: ignore[union-attr]
        await app[TRAFFIC].relay.close()


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


def wrap(mapping: CompiledMapping, route: CompiledRoute, handler: Handler) -> Handler:
    """The route's handler behind the split; token routes are always the gateway's own."""
    if mapping.legacy is None or route_class(route) == "token":
        return handler
    leg = legacy.LegacyLeg(mapping, route, "gw_session")
    facts = RouteFacts(mapping, route)
    provider, name, speech, transport = mapping.provider, route.name, facts.speech, facts.transport

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app  # a property that walks the match info: read once
        traffic = app[TRAFFIC]
        if not traffic.active:
            return await handler(request)
        req = RequestData(path=request.match_info, query=request.query, header=request.headers)
        cred = find_credential(mapping.credentials, req)
        first: tuple[web.WebSocketResponse, bytes, bytes] | None = None
        if speech and cred is None and leg.first_message_credentials:
            # the key (hence the tenant) is in the first message: accept, read it, then decide
            client, raw, stripped, cred = await legacy.accept_first(request, leg, RequestContext(mapping, route))
            if raw is None:
                return client
            first = (client, raw, stripped)
        auth = app[AUTH]
        caller = identify(auth, cred)
        if speech:
            json_post = is_json_post(request, facts)
            unit = Unit(provider, name, facts.kind, transport, caller.tenant,
                        sticky_keys(request, facts, traffic.settings.traffic, caller),
                        await stitched(request, facts, traffic.stitching, json_post),
                        override(request, caller) if caller.allow_overrides else None,
                        await own_object(request, facts, auth, cred, caller, json_post))
        else:
            unit = Unit(provider, name, facts.kind, transport, caller.tenant, {}, None,
                        override(request, caller) if caller.allow_overrides else None)
        decision = decide(traffic.settings.traffic, unit, datetime.now(UTC) if traffic.ramps else _NO_RAMPS)
        if not speech and decision.reason not in ("serve", "override"):
            return await handler(request)  # catalogues follow only `serve: legacy`
        # a REST unit the vendor serves counts its assignment once its request is on the way (`serve_legacy`)
        deferred = decision.target == "legacy" and first is None and transport == "rest"
        if not deferred:
            _assigned(traffic, provider, name, decision)
        request[_UNIT] = (decision.target, facts.id_header)
        plan = None
        if traffic.shadow is not None and speech:
            keys = shadow_keys(traffic.settings, caller, cred, provider)
            forced = caller.allow_overrides and request.headers.get("X-Gateway-Shadow", "").strip() == "1"
            plan = traffic.shadow.plan(unit, decision.target, mapping, route, request, keys, forced,
                                       reason=decision.reason)
            if plan is not None and not route.is_ws:
                plan.body = shadow_body(request, traffic.settings)
                if plan.body is None:
                    traffic.shadow.count_unstarted(plan, "dropped_overflow")
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
                # sampled, but its primary never began a session (a vendor's refused handshake): counted as
                # `ShadowAddon.session_end` counts a handshake refused after its session began
                if route.is_ws and (left := PLAN.get()) is not None and traffic.shadow is not None:
                    traffic.shadow.count_unstarted(left, NOT_UPGRADED)
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
    extra = traffic.legacy_extra
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
            resp = await legacy.serve_http(leg, request, ctx, traffic.relay, vendor, cred, traffic.metrics, extra,
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
    except ConnectionResetError:  # the caller left mid-body: nobody's bug, nobody to answer (as `http.py`)
        settle()
        status, end = "499", {"http_status": 499, "kind": "client_gone"}
        return web.Response(status=499)
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
