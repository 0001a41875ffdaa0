"""Requests aiohttp's own HTTP parser refuses (bad header bytes, broken framing, bad methods) never reach
a route, so no middleware sees them. aiohttp answers them with a plain-text 400 that repeats the
offending header line, key included, and logs it unredacted. For the gateway's applications this answers
a small JSON 400 with a request id instead, echoing nothing, and logs one redacted JSON line.

aiohttp has no hook for this, so `RequestHandler.handle_error` is wrapped once per process; other
applications in the process (the built-in emulator) keep aiohttp's behaviour.

aiohttp internals: `aiohttp.web_protocol.RequestHandler.handle_error` (replaced), the handler's `_manager`
(its `Server`, whose `request_handler` is the application's bound `_handle`); when they look different the
handler is not recognised as the gateway's and aiohttp's own 400 goes out (`tests/gateway/test_error_shapes.py`).
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.dialects.common import MAPPINGS

log = structlog.get_logger("gateway")
GATEWAY_APP = web.AppKey("gateway_app", bool)
_original = RequestHandler.handle_error


def _gateway_app(handler: RequestHandler) -> web.Application | None:
    manager = getattr(handler, "_manager", None)
    app = getattr(getattr(manager, "request_handler", None), "__self__", None)
    return app if isinstance(app, web.Application) and app.get(GATEWAY_APP, False) else None


def _summary(message: str | None) -> str:
    """The parser's reason without the echoed request bytes (`Invalid header value char:\\n\\n  b'...'`)."""
    first = (message or "").split(":", 1)[0].split("\n", 1)[0].strip()
    return first[:80] or "Malformed request"


def handle_error(self: RequestHandler, request: web.BaseRequest, status: int = 500,
                 exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
    app = _gateway_app(self)
    if app is None:
        return _original(self, request, status, exc, message)
    if request.writer.output_size > 0:
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    request_id = str(uuid.uuid4())
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    reason = _summary(message) if status < 500 else "Internal gateway error"
    log.warning("request.rejected_by_http_parser", status=status, reason=reason, request_id=request_id,
                error=type(exc).__name__ if exc is not None else None)
    body: dict[str, Any] = {"error": {"status": status, "code": phrase.lower().replace(" ", "_"),
                                      "message": f"{phrase}: {reason}"}, "request_id": request_id}
    headers = {"X-Request-Id": request_id}
    # the path is unknown here (the request line may be what failed): the refusal headers every dialect
    # wants on a refused request (Deepgram's `dg-error`) are all set
    for mapping in app.get(MAPPINGS, {}).values():
        if mapping.errors.refuse_header:
            headers[mapping.errors.refuse_header] = f"{phrase}: {reason}"
    resp = web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)
    resp.force_close()
    return resp


def install() -> None:
    if RequestHandler.handle_error is not handle_error:
        RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
