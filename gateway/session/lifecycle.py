"""A clean stop: on SIGTERM the gateway stops taking work, tells every live socket, and lets what is in
flight finish, up to a drain time.

`Lifecycle` (one per app) counts in-flight requests and sessions (a middleware) and knows the live
WebSocket sessions. `drain()` marks the app draining (`/readyz` answers 503 at once, new requests get
503), asks each live session to finish the way its dialect says a server going away does (input
ended, what is owed delivered, then close 1001), waits until nothing is in flight or `drain_s` has
passed, and closes whatever is left with 1001.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web


class Live(Protocol):
    async def shutdown(self) -> None: ...

    async def force_close(self) -> None: ...


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self.sessions: set[Live] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, session: Live) -> None:
        self.sessions.add(session)

    def discard(self, session: Live) -> None:
        self.sessions.discard(session)

    async def drain(self, drain_s: float) -> bool:
        """True when everything finished within `drain_s`."""
        self.draining = True
        deadline = time.monotonic() + drain_s
        await asyncio.gather(*(s.shutdown() for s in list(self.sessions)), return_exceptions=True)
        try:
            await asyncio.wait_for(self.idle.wait(), max(0.0, deadline - time.monotonic()))
            return True
        except TimeoutError:
            await asyncio.gather(*(s.force_close() for s in list(self.sessions)), return_exceptions=True)
            return False


LIVE = web.AppKey("lifecycle", Lifecycle)


@web.middleware
async def track_inflight(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    life = request.app[LIVE]
    if life.draining and request.path not in ("/healthz", "/readyz", "/metrics"):
        return web.json_response({"detail": {"status": "shutting_down", "message": "The gateway is shutting down"}},
                                 status=503, headers={"Retry-After": "1"})
    life.inflight += 1
    life.idle.clear()
    try:
        return await handler(request)
    finally:
        life.inflight -= 1
        if life.inflight == 0:
            life.idle.set()


def ready(app: web.Application) -> bool:
    life: Any = app.get(LIVE)
    return life is None or not life.draining
