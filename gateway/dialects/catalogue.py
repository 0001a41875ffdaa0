"""The `catalogue` and `account` builtins: voice and model lists answered from the mapping's tables and
Gradium's voices; the caller's plan and usage from Gradium's credits (`account`, see its docstring).

Items come from a table whose entries are dicts (`include: [{file, key, value: null}]` keeps whole
entries), each with its key as `id`, and optionally from the caller's Gradium voices
(`GET /api/voices/?include_catalog=true`: catalogue voices and the org's own clones), normalised to
the same fields. The provider's shapes are the route's templates:

- `item`: one item (its fields under `$item`); a list route renders every item with it;
- `list`: the page, with `$items` (the rendered items), `$total_count`, `$has_more`,
  `$next_page_token`;
- with `id_param`, the route answers one item (the `item` template) or the `miss` error.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import find_credential
from gateway.dialects.builtins import builtin
from gateway.dialects.common import AUTH, GRADIUM, RequestContext, render_event, request_id_headers
from gateway.dialects.gradium_library import is_mine, voice_item
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData


def _tag(tags: Any, category: str) -> str | None:
    for t in tags if isinstance(tags, list) else []:
        if isinstance(t, dict) and t.get("category") == category and t.get("value"):
            return str(t["value"])
    return None


def gradium_item(voice: dict[str, Any]) -> dict[str, Any] | None:
    """A Gradium `APIVoiceResponse` -> a catalogue item (`owned`: the org's own voice, not the catalogue's)."""
    uid = voice.get("uid")
    if not isinstance(uid, str) or not uid:
        return None
    locale = str(voice.get("language") or _tag(voice.get("tags"), "language") or "")
    return {
        "id": uid,
        "gradium": uid,
        "name": voice.get("name") or uid,
        "description": voice.get("description") or None,
        "language": locale.split("-")[0].lower() or None,
        "locale": locale or None,
        "gender": _tag(voice.get("tags"), "gender"),
        "accent": _tag(voice.get("tags"), "accent"),
        "owned": not voice.get("is_catalog", False),
        "source": "gradium",
    }


async def _gradium_voices(request: web.Request, ctx: RequestContext, key: str, include_catalog: bool,
                          style: str = "b64") -> list[dict[str, Any]]:
    try:
        data = await request.app[GRADIUM].get_json(
            "voices/", key, params={"include_catalog": "true" if include_catalog else "false", "limit": "0"})
    except GatewayError as err:
        if err.kind in ("unauthorized", "forbidden"):
            raise
        ctx.degrade("catalogue.gradium_voices", err)
        return []
    if not isinstance(data, list):
        return []
    # the caller's own voices: sealed ids, only its tenant's (gradium_library); catalogue voices as they are
    return [voice_item(v, style) if not v.get("is_catalog", False) else item
            for v in data if isinstance(v, dict) and (item := gradium_item(v))
            and (v.get("is_catalog", False) or is_mine(str(v.get("name") or "")))]


def _table_items(ctx: RequestContext, name: str | None, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    if not name:
        return []
    table = ctx.mapping.tables.get(name)
    if table is None:
        raise GatewayError("internal", f"catalogue table {name!r} is not defined")
    return [{**defaults, **(v if isinstance(v, dict) else {"value": v}), "id": k} for k, v in table.entries.items()]


def _page_token(value: Any) -> int:
    try:
        return max(0, int(str(value))) if value not in (None, "") else 0
    except ValueError:
        raise GatewayError("invalid_request", "next_page_token is not a token this server issued",
                           "next_page_token") from None


def _credits(data: Any) -> dict[str, Any]:
    """Gradium `GET /api/usages/credits` -> `$credits` fields (absent ones stay absent)."""
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {"plan": data.get("plan_name"), "billing_period": data.get("billing_period")}
    allocated, remaining = data.get("allocated_credits"), data.get("remaining_credits")
    if isinstance(allocated, int | float) and isinstance(remaining, int | float):
        out |= {"allocated": int(allocated), "remaining": int(remaining), "used": max(0, int(allocated - remaining))}
    rollover = data.get("next_rollover_date")
    if isinstance(rollover, str):
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(rollover[:10])
            out["reset_unix"] = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return {k: v for k, v in out.items() if v is not None}


def item_by_id(items: list[dict[str, Any]], params: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any] | None:
    """For a one-item route (`id_param` option): the item asked for, or the route's `miss` error.
    None when the route lists items instead."""
    id_param = opts.get("id_param")
    if not id_param:
        return None
    wanted = params.get(id_param)
    found = next((i for i in items if i["id"] == wanted), None)
    if found is None:
        raise GatewayError(str(opts.get("miss", "not_found")), f"{id_param}: {wanted!r} was not found", id_param)
    return found


def _filtered(items: list[dict[str, Any]], params: dict[str, Any], filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Option `item_filters`: {param: {value: {field: wanted}}}; an item matches when each named field
    equals the wanted value (absent counts as false). A value not in the table selects nothing."""
    for param, table in filters.items():
        value = params.get(param)
        if value is None:
            continue
        want = table.get(str(value))
        if not isinstance(want, dict):
            return []
        items = [i for i in items if all((i.get(f) or False) == w for f, w in want.items())]
    return items


@builtin("account")
async def account(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """The caller's account and plan, from Gradium's credits (`GET /api/usages/credits`), rendered by the
    route's `account` template with `$credits`: `plan`, `billing_period`, `allocated`, `remaining`,
    `used`, `reset_unix` (only those Gradium reported; the template gives defaults)."""
    route = ctx.route
    key = await request.app[AUTH].authorize(find_credential(ctx.mapping.credentials, req), ctx.mapping.provider,
                                            route.name)
    params = route.read_params(req)
    try:
        credits = _credits(await request.app[GRADIUM].get_json("usages/credits", key))
    except GatewayError as err:
        if err.kind in ("unauthorized", "forbidden"):
            raise
        ctx.degrade("account.credits", err)
        credits = {}
    body = render_event(route, ctx.scope(params), "account", {"credits": credits})
    if body is None:
        raise GatewayError("internal", "account route needs an `account` template")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))


@builtin("catalogue")
async def catalogue(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    """Options: `table` (items), `defaults` (fields for table items), `gradium_voices` (also list the
    caller's Gradium voices), `include_catalog` (with Gradium's catalogue voices, default true),
    `id_param` (answer one item), `miss` (error kind for an unknown id, default not_found),
    `search_param` (case-insensitive match on name/description), `item_filters` (see `_filtered`),
    `page_size_param` and `page_token_param` (paging; without a page size, everything)."""
    route = ctx.route
    opts = route.spec.builtin_options
    key = await request.app[AUTH].authorize(find_credential(ctx.mapping.credentials, req), ctx.mapping.provider,
                                            route.name)
    params = route.read_params(req)
    scope = ctx.scope(params)
    items = _table_items(ctx, opts.get("table"), dict(opts.get("defaults") or {}))
    if opts.get("gradium_voices"):
        known = {i["id"] for i in items}
        extra = await _gradium_voices(request, ctx, key, bool(opts.get("include_catalog", True)),
                                      str(opts.get("id_style", "b64")))
        items += [i for i in extra if i["id"] not in known]

    def render_item(item: dict[str, Any]) -> Any:
        return render_event(route, scope, "item", {"item": item})

    found = item_by_id(items, params, opts)
    if found is not None:
        body = render_item(found)
    else:
        items = _filtered(items, params, opts.get("item_filters") or {})
        search = params.get(opts.get("search_param") or "")
        if search:
            needle = str(search).casefold()
            items = [i for i in items
                     if needle in f"{i.get('name') or ''}\n{i.get('description') or ''}".casefold()]
        total = len(items)
        size = params.get(opts.get("page_size_param") or "")
        start = _page_token(params.get(opts.get("page_token_param") or ""))
        page = items[start : start + int(size)] if size else items[start:]
        end = start + len(page)
        fields = {
            "items": [render_item(i) for i in page],
            "total_count": total,
            "has_more": end < total,
            "next_page_token": str(end) if end < total else None,
        }
        body = render_event(route, scope, "list", fields)
    if body is None:
        raise GatewayError("internal", "catalogue route needs `item` and `list` templates")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))
