"""Translation sessions with no client socket: shadow legs, replays and tests.

    from gateway.session.headless import HeadlessSession

    async with HeadlessSession(app, "elevenlabs", "stream_input",
                               path={"voice_id": "21m00Tcm4TlvDq8ikWAM"},
                               query={"output_format": "pcm_16000"},
                               header={"xi-api-key": key}) as s:
        await s.send_json({"text": "Hello ", "xi_api_key": key})
        await s.send_json({"text": ""})
        end = await s.wait(timeout=10)          # events.SessionEnd: status, close_code, ...
    s.port.json()                                # every text frame the client would have got, parsed
    s.port.audio()                               # every binary frame, joined
    s.port.close_code, s.port.refusal           # the close, or the HTTP refusal that replaced the upgrade

`app` is the running gateway's `web.Application` (it holds the Gradium client, credentials and the
addons, which see the session like any other, with `flow.headless` set and `flow.target` as given).
`run_session(app, mapping, route, request, port, flow)` is the same without the helper: it runs one
session of a compiled WebSocket route on any `ClientPort` and returns its `SessionEnd`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from gateway.dialects.common import MAPPINGS, RequestContext
from gateway.events import Flow, SessionEnd
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.session.handler import run_ws
from gateway.session.port import CapturePort, ClientPort, Refusal


async def run_session(app: web.Application, mapping: CompiledMapping, route: CompiledRoute, request: RequestData,
                      port: ClientPort, flow: Flow | None = None) -> SessionEnd:
    """Run one WebSocket session of `route` with `port` as its client, to its end."""
    if not route.is_ws:
        raise ValueError(f"{mapping.provider}.{route.name} is not a WebSocket route")
    ctx = RequestContext(mapping, route)
    if flow is None:
        flow = Flow(mapping.provider, route.name, "ws", headless=True)
    ctx.request_id, ctx.started = flow.request_id, flow.started

    async def accept() -> ClientPort:
        return port

    def refuse(r: Refusal) -> None:
        if isinstance(port, CapturePort):
            port.refuse(r)

    return await run_ws(app, ctx, request, flow, accept, refuse)


class HeadlessSession:
    """One WebSocket session of a route, driven by code through a `CapturePort`."""

    def __init__(self, app: web.Application, provider: str, route: str, *,
                 path: Mapping[str, str] | None = None, query: Mapping[str, Any] | None = None,
                 header: Mapping[str, str] | None = None, target: str = "gradium",
                 port: CapturePort | None = None, request_id: str | None = None) -> None:
        mapping = app[MAPPINGS].get(provider)
        if mapping is None or route not in mapping.routes:
            raise KeyError(f"no route {provider}.{route}")
        self.app = app
        self.mapping: CompiledMapping = mapping
        self.route: CompiledRoute = mapping.routes[route]
        self.request = RequestData(path=dict(path or {}), query=MultiDict(query or {}),
                                   header=CIMultiDict(header or {}))
        self.port = port if port is not None else CapturePort()
        self.flow = Flow(provider, route, "ws", target=target, headless=True)
        if request_id is not None:
            self.flow.request_id = request_id
        self.task: asyncio.Task[SessionEnd] | None = None

    def start(self) -> asyncio.Task[SessionEnd]:
        if self.task is None:
            self.task = asyncio.create_task(
                run_session(self.app, self.mapping, self.route, self.request, self.port, self.flow),
                name=f"headless:{self.flow.provider}.{self.flow.route}")
        return self.task

    async def send_text(self, data: str) -> None:
        await self.port.feed_text(data)

    async def send_json(self, obj: Any) -> None:
        await self.port.feed_json(obj)

    async def send_bytes(self, data: bytes) -> None:
        await self.port.feed_bytes(data)

    async def close(self) -> None:
        """The client closes its side of the socket."""
        await self.port.feed_close()

    async def wait(self, timeout: float | None = None) -> SessionEnd:
        """The session's end (after it closed the port, refused, or saw the client close)."""
        return await asyncio.wait_for(asyncio.shield(self.start()), timeout)

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

    async def __aenter__(self) -> HeadlessSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel()
