"""aiohttp application: routes compiled from the mappings, shared upstream session, health, metrics."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.addons import ADDONS, AddonManager, default_addons
from gateway.auth import Authenticator, TokenStore, find_credential
from gateway.config import Settings
from gateway.dialects import (
    builtins,  # noqa: F401  (registers builtin handlers)
    cartesia_builtins,  # noqa: F401  (registers `cursor_catalogue`, `grant_token`)
    catalogue,  # noqa: F401  (registers the `catalogue` builtin)
    projects,  # noqa: F401  (registers the `projects` builtin)
)
from gateway.dialects.common import AUTH, GRADIUM, MAPPINGS, METRICS, SETTINGS, TOKENS
from gateway.dialects.http import Handler, route_handler
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.loader import load_mappings
from gateway.mapping.params import RequestData
from gateway.observability import Metrics
from gateway.session.handler import ws_route_handler
from gateway.session.lifecycle import LIVE, Lifecycle, ready, track_inflight
from gateway.upstream.gradium import GradiumClient

log = structlog.get_logger("gateway")
UPSTREAM_URL = web.AppKey("upstream_url", str)
DEFAULT_GRADIUM_URL = "https://api.gradium.ai/api"


def _handler(mapping: CompiledMapping, route: CompiledRoute) -> Handler:
    return ws_route_handler(mapping, route) if route.is_ws else route_handler(mapping, route)


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
    up = GRADIUM in request.app and ready(request.app)
    body = {
        "status": "ready" if up else ("draining" if GRADIUM in request.app else "starting"),
        "upstream": "emulator" if request.app[SETTINGS].uses_emulator else request.app.get(UPSTREAM_URL),
        "providers": sorted(request.app[MAPPINGS]),
    }
    return web.json_response(body, status=200 if up else 503)


async def _metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(request.app[METRICS].registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Paths no mapping serves still get JSON, not aiohttp's HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return web.json_response({"detail": {"status": exc.reason, "message": exc.reason}}, status=exc.status,
                                     headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"})
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
    session = aiohttp.ClientSession(connector=connector, json_serialize=lambda o: orjson.dumps(o).decode())
    app[GRADIUM] = GradiumClient(session, url, connect_timeout_s=settings.gradium.connect_timeout_s)
    log.info("gateway.upstream", url=url, emulator=settings.uses_emulator)
    try:
        yield
    finally:
        await app[GRADIUM].close_idle()
        await session.close()
        if emulator_runner is not None:
            with contextlib.suppress(Exception):
                await emulator_runner.cleanup()


def create_app(settings: Settings | None = None, addons: Sequence[object] = ()) -> web.Application:
    """The gateway. `addons` are registered after the built-in ones (`gateway.addons.default_addons`);
    more can be added with `app[ADDONS].register(addon)`."""
    settings = settings or Settings()
    app = web.Application(client_max_size=settings.limits.max_body_bytes, middlewares=[track_inflight, _json_errors])
    app[SETTINGS] = settings
    app[LIVE] = Lifecycle()
    metrics = app[METRICS] = Metrics()
    app[ADDONS] = AddonManager([*default_addons(metrics), *addons], metrics=metrics)
    tokens = TokenStore()
    app[TOKENS] = tokens
    default_key = settings.gradium.api_key.get_secret_value() if settings.gradium.api_key else None
    app[AUTH] = Authenticator(settings.auth, default_key, tokens)
    mappings = load_mappings(settings.mappings_dir, settings.voices)
    app[MAPPINGS] = mappings
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    add_mapping_routes(app, mappings)
    app.cleanup_ctx.append(_upstream_ctx)
    return app
