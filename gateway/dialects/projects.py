"""The `projects` builtin: the caller's account as the provider's "project" (Deepgram `GET /v1/projects`).

Clients call it as a key check at start-up, so it authenticates exactly like a speech route (a
refused key is the provider's 401). The project is the caller's tenant (managed mode) or, in
forward mode, the Gradium key it presented; its id is a stable UUID derived from a hash of that key,
never the key. Rendered with the route's `item` template (`$item.id`, `$item.name`) and the `list`
template (`$items`: the rendered items); with option `id_param`, one project or a `not_found` error.
Option `name`: the project name in forward mode (default "Gradium").
"""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from gateway.auth import find_credential, is_gateway_token
from gateway.dialects.builtins import builtin
from gateway.dialects.common import AUTH, GRADIUM, RequestContext, render_event, request_id_headers
from gateway.errors import GatewayError
from gateway.mapping.functions import stable_uuid
from gateway.mapping.params import RequestData


@builtin("projects")
async def projects(request: web.Request, ctx: RequestContext, req: RequestData) -> web.StreamResponse:
    route = ctx.route
    opts = route.spec.builtin_options
    auth = request.app[AUTH]
    cred = find_credential(ctx.mapping.credentials, req)
    upstream_key = await auth.authorize(cred, ctx.mapping.provider, route.name)
    params = route.read_params(req)
    if cred is not None and not is_gateway_token(cred.value):
        await request.app[GRADIUM].get_json("usages/credits", upstream_key)  # a key check: refused keys get 401
    tenant = auth.settings.tenant_for(cred.value) if cred is not None and auth.settings.mode == "managed" else None
    digest = hashlib.sha256(upstream_key.encode()).hexdigest()[:32]
    item = {"id": stable_uuid(f"project:{tenant or digest}"), "name": tenant or str(opts.get("name", "Gradium"))}
    scope = ctx.scope(params)
    id_param = opts.get("id_param")
    if id_param:
        if params.get(id_param) != item["id"]:
            raise GatewayError("not_found", f"{id_param}: project not found", id_param)
        body = render_event(route, scope, "item", {"item": item})
    else:
        body = render_event(route, scope, "list", {"items": [render_event(route, scope, "item", {"item": item})]})
    if body is None:
        raise GatewayError("internal", "projects route needs `item` and `list` templates")
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=request_id_headers(ctx))
