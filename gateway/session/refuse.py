"""Refusing a WebSocket upgrade with an HTTP answer (Deepgram's way): the status, the message in a header,
the error body in the dialect's shape."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.dialects.common import RequestContext, error_scope, request_id_headers
from gateway.errors import GatewayError
from gateway.session.port import Refusal


def refusal(ctx: RequestContext, err: GatewayError) -> Refusal:
    spec = ctx.mapping.errors.kinds[err.kind]
    headers = dict(request_id_headers(ctx))
    if ctx.mapping.errors.refuse_header:
        headers[ctx.mapping.errors.refuse_header] = err.message
    body = ctx.mapping.errors.http_body(error_scope(ctx, err))
    if isinstance(body, str):  # plain-text error bodies (see `http_error`)
        return Refusal(spec.status, {**headers, "Content-Type": "text/plain; charset=utf-8"}, body.encode())
    return Refusal(spec.status, {**headers, "Content-Type": "application/json"}, orjson.dumps(body))


def refusal_response(r: Refusal) -> web.Response:
    headers = dict(r.headers)
    content_type = headers.pop("Content-Type")
    return web.Response(status=r.status, body=r.body, headers={**headers, "Content-Type": content_type})
