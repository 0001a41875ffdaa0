"""Named route handlers for what is not a Gradium session: gateway-minted tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from gateway.auth import find_credential
from gateway.dialects.common import AUTH, SETTINGS, TOKENS, RequestContext, render_event, request_id_headers
from gateway.dialects.http import BUILTINS, BuiltinHandler
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData


def builtin(name: str):  # type: ignore[no-untyped-def]
    def register(fn: BuiltinHandler) -> BuiltinHandler:
        BUILTINS[name] = fn
        return fn

    return register


@builtin("mint_token")
async def mint_token(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """A short-lived gateway token standing for the caller's upstream key (never the key itself).

    Options: `scope` (route name the token is good for, `*` for all), `single_use`, `max_ttl_s`.
    Param `ttl_seconds` (optional) asks for a shorter lifetime. Rendered by the route's `token` template.
    """
    route = ctx.route
    opts = route.spec.builtin_options
    upstream_key = request.app[AUTH].upstream_key(find_credential(ctx.mapping.credentials, req))
    params = route.read_params(req)
    default_ttl = request.app[SETTINGS].auth.token_ttl_s
    ttl = float(params.get("ttl_seconds") or opts.get("ttl_s") or default_ttl)
    ttl = min(ttl, float(opts.get("max_ttl_s", default_ttl)))
    if ttl <= 0:
        raise GatewayError("invalid_request", "ttl_seconds must be positive", "ttl_seconds")
    token, expires = request.app[TOKENS].mint(
        upstream_key, ttl, scope=str(opts.get("scope", "*")), single_use=bool(opts.get("single_use", True))
    )
    fields = {
        "token": token,
        "expires_in": int(ttl),
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z"),
    }
    body = render_event(route, ctx.scope(params), "token", fields)
    if body is None:
        raise GatewayError("internal", "token route has no `token` template")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))
