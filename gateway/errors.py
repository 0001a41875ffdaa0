"""The gateway's own error: a kind from a closed list, rendered by each dialect's error table."""

from __future__ import annotations


class GatewayError(Exception):
    """A failure the client should see, in its provider's shape.

    `kind` is one of `mapping.schema.ERROR_KINDS`; the dialect's mapping decides the HTTP status,
    the provider error code and the WebSocket close code. `message` must be safe to show (no keys).
    """

    def __init__(self, kind: str, message: str, param: str | None = None, *, upstream_code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.upstream_code = upstream_code

    def __repr__(self) -> str:
        return f"GatewayError({self.kind!r}, {self.message!r})"
