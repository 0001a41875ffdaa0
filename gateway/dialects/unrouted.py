"""Errors no route renders (unknown paths, wrong methods, refused WebSocket handshakes) in the shape of the
provider whose path it is: its `/{provider}` prefix, else the provider whose routes share the longest
leading part of the path, else the one whose credential the request carries."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import find_credential
from gateway.dialects.common import RequestContext, http_error
from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledMapping
from gateway.mapping.params import RequestData

_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited"}
_MESSAGES = {404: "Not found", 405: "Method not allowed", 413: "Request body is too large"}


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _shared_prefix(path: list[str], template: list[str]) -> int:
    n = 0
    for got, want in zip(path, template, strict=False):
        if got != want and not want.startswith("{"):
            break
        n += 1
    return n


def owner(mappings: dict[str, CompiledMapping], request: web.BaseRequest) -> CompiledMapping:
    segs = _segments(request.path)
    if segs and segs[0] in mappings:
        return mappings[segs[0]]
    scores: dict[str, int] = {}
    for name, m in mappings.items():
        scores[name] = max((_shared_prefix(segs, _segments(r.path)) + (not segs and r.path == "/")
                            for r in m.routes.values()), default=0)
    best = max(scores.values(), default=0)
    # a tie nothing else breaks keeps the historical ElevenLabs shape first
    candidates = sorted((mappings[n] for n, s in scores.items() if s == best),
                        key=lambda m: (m.provider != "elevenlabs", m.provider))
    req = RequestData(query=request.query, header=request.headers)
    for m in candidates:
        if find_credential(m.credentials, req) is not None:
            return m
    return candidates[0]


def unrouted_error(mappings: dict[str, CompiledMapping], request: web.BaseRequest,
                   exc: web.HTTPException) -> web.Response:
    mapping = owner(mappings, request)
    kind = _KINDS.get(exc.status, "invalid_request" if exc.status < 500 else "internal")
    # aiohttp's own texts (handshake refusals) are fixed strings; bounded all the same
    message = _MESSAGES.get(exc.status) or (exc.text or exc.reason or "Bad request").splitlines()[0][:200]
    ctx = RequestContext(mapping, next(iter(mapping.routes.values())))
    ctx.req = RequestData(query=request.query, header=request.headers)
    resp = http_error(ctx, GatewayError(kind, message))
    if "Allow" in exc.headers:
        resp.headers["Allow"] = exc.headers["Allow"]
    if mapping.errors.refuse_header:  # Deepgram: every refusal, handshakes included, says why in `dg-error`
        resp.headers[mapping.errors.refuse_header] = message
    return resp
