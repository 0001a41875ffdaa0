"""Named route handlers for what is not a Gradium session: gateway-minted tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import find_credential
from gateway.dialects.common import (
    AUTH,
    GRADIUM,
    SETTINGS,
    RequestContext,
    render_event,
    request_id_headers,
)
from gateway.dialects.http import BUILTINS, BuiltinHandler
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData


def builtin(name: str):  # type: ignore[no-untyped-def]
    def register(fn: BuiltinHandler) -> BuiltinHandler:
        BUILTINS[name] = fn
        return fn

    return register


def _routes(value: object) -> list[str]:
    """A token scope: one route name, `*` (every route of the provider), or a list of route names."""
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@builtin("mint_token")
async def mint_token(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """A short-lived gateway token standing for the caller's upstream key (never the key itself).

    Options: `scope` (route name the token is good for, `*` for all), `single_use`, `max_ttl_s`, `ttl_s`
    (default lifetime), `shape` (`opaque` `gwt_...` or `jwt`, a signed JWT whose `exp` is the expiry),
    Param `ttl_seconds` (optional) asks for a shorter lifetime. Rendered by the route's `token` template.
    A `scope` may also be a list of route names; a param `scope` (e.g. a token type looked up in a
    table) overrides the option. Scopes are the provider's own routes; only an API key mints, and it is
    checked with Gradium first, so a bad key is refused now, not at first use.
    """
    route = ctx.route
    opts = route.spec.builtin_options
    auth = request.app[AUTH]
    minter = auth.minter(find_credential(ctx.mapping.credentials, req))
    params = route.read_params(req)
    await request.app[GRADIUM].get_json("usages/credits", minter.upstream_key)  # refused keys get the usual 401
    default_ttl = request.app[SETTINGS].auth.token_ttl_s
    ttl = float(params.get("ttl_seconds") or opts.get("ttl_s") or default_ttl)
    ttl = min(ttl, float(opts.get("max_ttl_s", default_ttl)))
    if ttl <= 0:
        raise GatewayError("invalid_request", "ttl_seconds must be positive", "ttl_seconds")
    token, expires = auth.mint(
        minter, ctx.mapping.provider, _routes(params.get("scope") or opts.get("scope", "*")), ttl,
        single_use=bool(opts.get("single_use", True)), shape=str(opts.get("shape", "opaque")),
    )
    return token_response(ctx, params, token, expires, ttl)


def token_response(ctx: RequestContext, params: dict[str, Any], token: str, expires: float,
                   ttl: float) -> web.Response:
    """A minted token rendered by the route's `token` template."""
    fields = {
        "token": token,
        "expires_in": int(ttl),
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z"),
    }
    body = render_event(ctx.route, ctx.scope(params), "token", fields)
    if body is None:
        raise GatewayError("internal", "token route has no `token` template")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))
