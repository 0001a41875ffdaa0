"""Gradium's failures as the gateway's errors: error frames, HTTP error bodies of every shape (`error from
server <code>: ...`, JSON `{"error", "code"}` or `{"detail"}`), and sockets that closed too early, each
classified into a `GatewayError` kind the dialects can render."""

from __future__ import annotations

import re

import aiohttp
import orjson

from gateway.errors import GatewayError
from gateway.observability import redact_text
from gateway.upstream import protocol
from gateway.upstream.protocol import Message

_SERVER_ERR = re.compile(r"error from server (\d+):\s*(.*)", re.S)


def classify(code: int | None, message: str, http_status: int | None = None) -> GatewayError:
    """Gradium's error (WS close code and/or HTTP status, message) -> a gateway error kind."""
    msg = redact_text(message.strip() or "Gradium reported an error")
    low = msg.lower()
    if "embeddings not found" in low or ("voice" in low and "not found" in low):
        kind = "voice_not_found"
        # a deleted custom voice: the client knows it by its gateway id, never by this Gradium uid
        msg = "The voice was not found" if "embeddings not found" in low else msg
    elif "pronunciation" in low and "not found" in low:
        kind, msg = "not_found", "The pronunciation dictionary was not found"
    elif "api key" in low or http_status == 401 or ("token" in low and code == 1008):
        kind = "unauthorized"
    elif http_status == 403 or (code == 1008 and ("region" in low or "residency" in low)):
        kind = "forbidden"
    elif http_status == 429 or (code == 1008 and ("concurren" in low or "credit" in low or "limit" in low)):
        kind = "rate_limited"
    elif code in (1002, 1003) or http_status in (400, 422):
        kind = "invalid_request"
    elif http_status == 404:
        kind = "not_found"
    else:
        kind = "upstream_error"
    return GatewayError(kind, msg, upstream_code=code or http_status)


def parse_rest_error(status: int, body: bytes) -> GatewayError:
    text = body.decode("utf-8", "replace")
    m = _SERVER_ERR.search(text)
    if m:
        return classify(int(m.group(1)), m.group(2), None)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return classify(None, text[:300] or f"HTTP {status}", status)
    if isinstance(data, dict):
        if "detail" in data:
            detail = data["detail"]
            message = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
            return classify(None, message, status)
        if "error" in data:
            code = data.get("code")
            return classify(code if isinstance(code, int) and code >= 1000 else None, str(data["error"]),
                            code if isinstance(code, int) and code < 1000 else status)
    return classify(None, text[:300], status)


def malformed() -> GatewayError:
    """A frame `protocol.parse` refused (`protocol.Malformed`): Gradium's fault. Callers catch it inline,
    with no wrapper function: this is the per-frame path."""
    return GatewayError("upstream_error", "Gradium sent a malformed message")


def error_from(msg: Message) -> GatewayError:
    """A Gradium `error` message as the gateway's error."""
    return classify(*protocol.error_of(msg))


class UpstreamClosed(GatewayError):
    """A send on a Gradium socket that is already closed: why it closed is for `recv` to tell."""

    def __init__(self, message: str = "Gradium connection closed") -> None:
        super().__init__("upstream_unavailable", message)


def closed_error(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> GatewayError:
    """Why a Gradium socket ended before the request did."""
    if msg.type is aiohttp.WSMsgType.ERROR:
        return GatewayError("upstream_unavailable", "Gradium connection failed")
    code = ws.close_code
    if code not in (None, 1000):
        return classify(code, str(msg.extra or "Gradium closed the session"))
    return GatewayError("upstream_error", "Gradium closed the session before it ended")


_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
