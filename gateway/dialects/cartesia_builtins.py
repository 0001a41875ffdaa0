"""Builtins the Cartesia mapping names: a cursor-paged catalogue and grant-scoped access tokens.

Both are generic (options and templates carry the provider's facts):

- `cursor_catalogue`: a table's entries (dicts, their key as `id`) as pages cut by item-id cursors
  (`starting_after` / `ending_before`, Stripe-style): a cursor past the end gives an empty page, which
  is how SDKs that ignore `has_more` know to stop; or one entry by id.
- `grant_token`: a short-lived gateway token whose scope is the routes of the grants asked for
  (`{"grants": {"tts": true}}` -> the TTS routes), standing for the caller's upstream key.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.auth import find_credential
from gateway.dialects.builtins import builtin, token_response
from gateway.dialects.catalogue import item_by_id
from gateway.dialects.common import AUTH, GRADIUM, SETTINGS, RequestContext, render_event, request_id_headers
from gateway.dialects.gradium_library import own_voices
from gateway.errors import GatewayError
from gateway.mapping.params import CompiledTable, RequestData


def _table(ctx: RequestContext, name: Any) -> CompiledTable:
    table = ctx.mapping.tables.get(str(name))
    if table is None:
        raise GatewayError("internal", f"table {name!r} is not defined")
    return table


def _items(ctx: RequestContext, opts: dict[str, Any]) -> list[dict[str, Any]]:
    maps = {field: _table(ctx, t) for field, t in (opts.get("field_tables") or {}).items()}
    out = []
    for key, entry in _table(ctx, opts.get("table")).entries.items():
        item = {**entry, "id": key} if isinstance(entry, dict) else {"value": entry, "id": key}
        for field, t in maps.items():
            value = item.get(field)
            if value is not None:
                k = str(value).lower() if t.case_insensitive else str(value)
                item[field] = t.entries.get(k, value)
        out.append(item)
    return out


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("true", "1"))


@builtin("cursor_catalogue")
async def cursor_catalogue(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Options: `table` (entries are dicts), `field_tables` ({field: table} mapping item values, e.g.
    `male` -> `masculine`), `id_param` (answer one item or `miss`, default not_found), `limit_param`,
    `after_param`, `before_param` (cursor params), `filters` ({param: field}: exact match),
    `search` ({param, fields}: case-insensitive substring), `empty_params` (params that, when true,
    select what the gateway has none of, e.g. the caller's own voices: an empty list).
    Templates: `item` (`$item`) and `list` (`$items` rendered, `$has_more`, `$next_page_token` = id of
    the page's last item when there is more, `$total_count`)."""
    route = ctx.route
    opts = route.spec.builtin_options
    key = await request.app[AUTH].authorize(find_credential(ctx.mapping.credentials, req), ctx.mapping.provider,
                                            route.name)
    params = route.read_params(req)
    scope = ctx.scope(params)
    items = _items(ctx, opts)
    if opts.get("gradium_voices"):
        owned = await own_voices(request, key, str(opts.get("id_style", "b64")))
        maps = {field: _table(ctx, t) for field, t in (opts.get("field_tables") or {}).items()}
        for item in owned:
            for field, t in maps.items():
                if item.get(field) is not None:
                    item[field] = t.entries.get(str(item[field]).lower(), item[field])
        items = owned + items

    def render_item(item: dict[str, Any]) -> Any:
        return render_event(route, scope, "item", {"item": item})

    found = item_by_id(items, params, opts)
    if found is not None:
        body = render_item(found)
    else:
        if any(_truthy(params.get(p)) for p in opts.get("empty_params") or []):
            items = []
        owner = params.get(opts.get("owned_param") or "")
        if owner is not None:
            items = [i for i in items if bool(i.get("owned")) == _truthy(owner)]
        for param, field in (opts.get("filters") or {}).items():
            want = params.get(param)
            if want is not None:
                items = [i for i in items if str(i.get(field) or "").lower() == str(want).lower()]
        search = opts.get("search") or {}
        needle = params.get(search.get("param") or "")
        if needle:
            n = str(needle).casefold()
            fields = search.get("fields") or ["name"]
            items = [i for i in items if any(n in str(i.get(f) or "").casefold() for f in fields)]
        total = len(items)
        limit = int(params.get(opts.get("limit_param") or "") or total or 1)
        index = {i["id"]: n for n, i in enumerate(items)}

        def position(param_opt: str) -> int | None:
            name = opts.get(param_opt)
            cursor = params.get(name) if name else None
            if cursor is None:
                return None
            if cursor not in index:
                raise GatewayError("invalid_request", f"{name}: {cursor!r} is not an id from this list", name)
            return index[cursor]

        after, before = position("after_param"), position("before_param")
        if after is not None:
            start = after + 1
            page = items[start : start + limit]
            more = start + limit < total
        elif before is not None:
            start = max(0, before - limit)
            page = items[start:before]
            more = start > 0  # more in the direction of travel (towards the start)
        else:
            page = items[:limit]
            more = limit < total
        fields = {
            "items": [render_item(i) for i in page],
            "has_more": more,
            "next_page_token": (page[0] if before is not None else page[-1])["id"] if more and page else None,
            "total_count": total,
        }
        body = render_event(route, scope, "list", fields)
    if body is None:
        raise GatewayError("internal", "catalogue route needs `item` and `list` templates")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))


@builtin("grant_token")
async def grant_token(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Options: `grants` ({grant: [route names]}), `always` (routes every token may use, e.g. the
    voice list), `default_grants` (when the request names none), `ttl_s` (default lifetime),
    `max_ttl_s`, `shape` (`opaque` or `jwt`). Params: `grants` (object of booleans), `ttl_seconds`.
    The token is reusable until it expires and good only on its routes; a token cannot mint another.
    Rendered by the route's `token` template (`$token`, `$expires_in`, `$expires_at`)."""
    route = ctx.route
    opts = route.spec.builtin_options
    auth = request.app[AUTH]
    minter = auth.minter(find_credential(ctx.mapping.credentials, req))
    params = route.read_params(req)
    asked = params.get("grants")
    if asked is None:
        names = list(opts.get("default_grants") or [])
    elif isinstance(asked, dict):
        names = [name for name, on in asked.items() if on is True]
    else:
        raise GatewayError("invalid_request", "grants must be an object of booleans", "grants")
    table = opts.get("grants") or {}
    routes = list(opts.get("always") or [])
    for name in names:
        routes += [r for r in table.get(name) or [] if r not in routes]
    default_ttl = float(opts.get("ttl_s") or request.app[SETTINGS].auth.token_ttl_s)
    ttl = float(params.get("ttl_seconds") or default_ttl)
    ttl = min(ttl, float(opts.get("max_ttl_s", ttl)))
    if ttl <= 0:
        raise GatewayError("invalid_request", "expires_in must be positive", "expires_in")
    await request.app[GRADIUM].get_json("usages/credits", minter.upstream_key)  # refused keys get the usual 401
    token, expires = auth.mint(minter, ctx.mapping.provider, routes, ttl, single_use=False,
                               shape=str(opts.get("shape", "opaque")))
    return token_response(ctx, params, token, expires, ttl)
