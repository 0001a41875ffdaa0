"""A translated session on a socket the split already accepted and read the first message of (ElevenLabs
keys in the first message: the tenant, hence the side, is known only then). mitmproxy's `NextLayer` shape:
the message read to decide is replayed to the layer that takes the connection."""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.dialects.common import RequestContext
from gateway.events import Flow
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.session.handler import run_ws
from gateway.session.port import TEXT, AiohttpPort, ClientPort, Inbound, Refusal


class ReplayPort:
    """The client's port, whose first `receive` returns the message already read."""

    __slots__ = ("first", "inner")

    def __init__(self, inner: AiohttpPort, first: Inbound) -> None:
        self.inner = inner
        self.first: Inbound | None = first

    @property
    def closed(self) -> bool:
        return self.inner.closed

    async def receive(self, timeout: float | None = None) -> Inbound:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        return await self.inner.receive(timeout)

    async def send_text(self, data: bytes) -> None:
        await self.inner.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.inner.send_bytes(data)

    async def close(self, code: int, message: bytes = b"") -> None:
        await self.inner.close(code, message)


async def replay_first(request: web.Request, mapping: CompiledMapping, route: CompiledRoute,
                       client: web.WebSocketResponse, raw: bytes) -> web.WebSocketResponse:
    ctx = RequestContext(mapping, route)
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id, provider=mapping.provider, route=route.name)
    port = ReplayPort(AiohttpPort(client), Inbound(TEXT, raw.decode("utf-8", "replace")))

    async def accept() -> ClientPort:
        return port

    def refuse(_: Refusal) -> None:  # already upgraded: errors go inside the socket
        return None

    try:
        req = RequestData(path=request.match_info, query=request.query, header=request.headers)
        flow = Flow(mapping.provider, route.name, "ws", request_id=ctx.request_id, started=ctx.started)
        await run_ws(request.app, ctx, req, flow, accept, refuse)
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "provider", "route")
    return client
