"""The gateway's own error: a kind from a closed list, rendered by each dialect's error table."""

from __future__ import annotations

# An error repeats at most this much of what it is about: a multi-megabyte bad value must not come
# back (or reach the logs) whole.
MAX_MESSAGE_CHARS = 400
MAX_PARAM_CHARS = 64


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GatewayError(Exception):
    """A failure the client should see, in its provider's shape.

    `kind` is one of `mapping.schema.ERROR_KINDS`; the dialect's mapping decides the HTTP status,
    the provider error code and the WebSocket close code. `message` must be safe to show (no keys).
    """

    def __init__(self, kind: str, message: str, param: str | None = None, *, upstream_code: int | None = None):
        message = bounded(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = bounded(param, MAX_PARAM_CHARS) if param is not None else None
        self.upstream_code = upstream_code

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r})"
