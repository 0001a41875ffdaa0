"""aiohttp application: routes compiled from the mappings, shared upstream session, health, metrics."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from gateway import parser_errors
from gateway.addons import ADDONS, AddonManager, default_addons
from gateway.auth import Authenticator, find_credential
from gateway.config import AuthSettings, Settings
from gateway.dialects import (
    builtins,  # noqa: F401  (registers builtin handlers)
    cartesia_builtins,  # noqa: F401  (registers `cursor_catalogue`, `grant_token`)
    catalogue,  # noqa: F401  (registers the `catalogue` builtin)
    projects,  # noqa: F401  (registers the `projects` builtin)
    pronunciation,  # noqa: F401  (registers `pronunciation`)
    voice_clone,  # noqa: F401  (registers `voice_clone`, `voice_edit`, `voice_delete`)
    voice_design,  # noqa: F401  (registers `voice_design`, `voice_keep`)
)
from gateway.dialects.common import AUTH, GRADIUM, MAPPINGS, METRICS, SETTINGS, TOKENS
from gateway.dialects.fetch import FETCH_SESSION, fetch_session
from gateway.dialects.http import Handler, route_handler
from gateway.dialects.unrouted import unrouted_error
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.loader import load_mappings
from gateway.mapping.params import RequestData
from gateway.observability import Metrics
from gateway.parser_errors import GATEWAY_APP
from gateway.session.handler import ws_route_handler
from gateway.session.lifecycle import LIVE, Lifecycle, ready, track_inflight
from gateway.state import SHARED_STATE, SharedUsedTokens, open_state
from gateway.tokens import TokenIssuer
from gateway.traffic import admin as shadow_admin
from gateway.traffic import fallthrough
from gateway.traffic import router as traffic_router
from gateway.traffic.checks import check_settings
from gateway.upstream.gradium import GradiumClient

log = structlog.get_logger("gateway")
UPSTREAM_URL = web.AppKey("upstream_url", str)
DEFAULT_GRADIUM_URL = "https://api.gradium.ai/api"


def _handler(mapping: CompiledMapping, route: CompiledRoute) -> Handler:
    inner = ws_route_handler(mapping, route) if route.is_ws else route_handler(mapping, route)
    return traffic_router.wrap(mapping, route, inner)  # the split: gradium or the legacy vendor


def _dispatch(candidates: list[tuple[CompiledMapping, CompiledRoute]]) -> Handler:
    """Several providers share a path (`GET /v1/models`): pick by whose credential the request carries."""
    handlers = [(m, _handler(m, r)) for m, r in candidates]

    async def handle(request: web.Request) -> web.StreamResponse:
        req = RequestData(query=request.query, header=request.headers)
        for mapping, h in handlers:
            if find_credential(mapping.credentials, req) is not None:
                return await h(request)
        return await handlers[0][1](request)

    return handle


def add_mapping_routes(app: web.Application, mappings: dict[str, CompiledMapping]) -> None:
    shared: dict[tuple[str, str], list[tuple[CompiledMapping, CompiledRoute]]] = defaultdict(list)
    for mapping in mappings.values():
        for route in mapping.routes.values():
            shared[(route.method, route.path)].append((mapping, route))
            # Every provider is also reachable under its own prefix, which is never ambiguous.
            app.router.add_route(route.method, f"/{mapping.provider}{route.path}", _handler(mapping, route))
    for (method, path), candidates in shared.items():
        handler = _handler(*candidates[0]) if len(candidates) == 1 else _dispatch(candidates)
        app.router.add_route(method, path, handler)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=lambda o: orjson.dumps(o).decode())


async def _readyz(request: web.Request) -> web.Response:
    started = GRADIUM in request.app
    draining = started and not ready(request.app)
    reachable = started and not draining and await request.app[GRADIUM].reachable()
    up = started and reachable
    body = {
        "status": "ready" if up else "starting" if not started else "draining" if draining else "gradium_unreachable",
        "upstream": "emulator" if request.app[SETTINGS].uses_emulator else request.app.get(UPSTREAM_URL),
        "providers": sorted(request.app[MAPPINGS]),
        "config_version": request.app[traffic_router.TRAFFIC].version,  # hash of `traffic` + `shadow`
    }
    return web.json_response(body, status=200 if up else 503)


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # `serve --workers N`: the sum over every worker
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    resp = web.Response(body=generate_latest(registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Paths no mapping serves, wrong methods and refused handshakes still get the path's provider's error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405) and (relayed := await fallthrough.serve(request)) is not None:
            return relayed  # a tenant with `fallthrough: legacy`: the vendor serves what the gateway does not
        if exc.status >= 400 and exc.content_type != "application/json":
            return unrouted_error(request.app[MAPPINGS], request, exc)
        raise


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    emulator_runner: web.AppRunner | None = None
    if settings.uses_emulator:
        from gateway.emulator.app import create_emulator_app

        emulator_runner = web.AppRunner(create_emulator_app(), access_log=None)
        await emulator_runner.setup()
        site = web.TCPSite(emulator_runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/api"
    else:
        url = settings.gradium.base_url or DEFAULT_GRADIUM_URL
    app[UPSTREAM_URL] = url
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    # no cookie jar: a cookie one caller's upstream set must never ride on another caller's request
    session = aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode(),
                                    cookie_jar=aiohttp.DummyCookieJar())
    app[FETCH_SESSION] = fetch_session(settings.fetch)
    app[GRADIUM] = GradiumClient(session, url, connect_timeout_s=settings.gradium.connect_timeout_s)
    log.info("gateway.upstream", url=url, emulator=settings.uses_emulator)
    try:
        yield
    finally:
        await app[GRADIUM].close_idle()
        await session.close()
        await app[FETCH_SESSION].close()
        if emulator_runner is not None:
            with contextlib.suppress(Exception):
                await emulator_runner.cleanup()


def token_secret(auth: AuthSettings) -> bytes:
    """The configured signing secret, else a random one for this process (`serve` warns about it)."""
    if auth.token_secret is not None:
        return auth.token_secret.get_secret_value().encode()
    return secrets.token_bytes(32)


def create_app(settings: Settings | None = None, addons: Sequence[object] = ()) -> web.Application:
    """The gateway. `addons` are registered after the built-in ones (`gateway.addons.default_addons`);
    more can be added with `app[ADDONS].register(addon)`."""
    settings = settings or Settings()
    app = web.Application(client_max_size=settings.limits.max_body_bytes, middlewares=[track_inflight, _json_errors])
    app[SETTINGS] = settings
    app[GATEWAY_APP] = True
    parser_errors.install()
    app[LIVE] = Lifecycle()
    metrics = app[METRICS] = Metrics()
    app[ADDONS] = AddonManager([*default_addons(metrics), *addons], metrics=metrics)
    mappings = load_mappings(settings.mappings_dir, settings.voices)
    check_settings(settings, mappings)
    app[MAPPINGS] = mappings
    app[TOKENS] = tokens = TokenIssuer(token_secret(settings.auth))
    default_key = settings.gradium.api_key.get_secret_value() if settings.gradium.api_key else None
    route_providers: dict[str, set[str]] = defaultdict(set)
    for m in mappings.values():
        for name in m.routes:
            route_providers[name].add(m.provider)
    state = app[SHARED_STATE] = open_state(settings.state)
    # With Redis, single-use tokens are claimed fleet-wide; in memory, harden's bounded per-process set.
    used = SharedUsedTokens(state) if settings.state.redis_url else None
    app[AUTH] = Authenticator(settings.auth, default_key, tokens, used=used, route_providers=dict(route_providers))
    traffic_router.install(app, settings)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    add_mapping_routes(app, mappings)
    shadow_admin.install(app, settings, app[METRICS].registry)  # pair recorder + /_gateway/shadow
    app.cleanup_ctx.append(_upstream_ctx)
    app.on_cleanup.append(_close_state)
    return app


async def _close_state(app: web.Application) -> None:
    await app[SHARED_STATE].close()
