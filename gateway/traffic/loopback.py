"""The Gradium side of REST shadow legs: the mapping's own HTTP route handlers, without the split, on a
loopback port that only the gateway itself calls (specs/traffic.md §4.2: the shadow leg is the same
engine as a primary of its side, with a headless client — here the leg's HTTP client).

The app shares the gateway's state (Gradium client, mappings, settings, tokens) but forwards credentials
as they come (the leg presents the tenant's shadow key, never its production key) and has no addons, so
a shadow leg is never counted as a client's request. Started on the first Gradium REST shadow leg. Only
the gateway can use it: every request must carry this process's random `X-Gateway-Loopback` secret.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets

from aiohttp import web

from gateway.addons import ADDONS, AddonManager
from gateway.auth import Authenticator
from gateway.config import AuthSettings
from gateway.dialects.common import AUTH, MAPPINGS, SETTINGS
from gateway.dialects.http import Handler, route_handler

SECRET_HEADER = "X-Gateway-Loopback"


class Loopback:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.secret = secrets.token_urlsafe(32)
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    async def base_url(self) -> str:
        async with self._lock:
            if self.url is None:
                await self._start()
            assert self.url is not None
            return self.url

    async def _start(self) -> None:
        main = self.app
        inner = web.Application(client_max_size=main[SETTINGS].limits.max_body_bytes, middlewares=[self._only_us])
        for key in main:
            inner[key] = main[key]  # type: ignore[index]
        inner[AUTH] = Authenticator(AuthSettings(mode="forward"), None, main[AUTH].issuer)
        inner[ADDONS] = AddonManager()
        for mapping in main[MAPPINGS].values():
            for route in mapping.routes.values():
                if not route.is_ws and route.spec.gradium is not None:
                    inner.router.add_route(route.method, f"/{mapping.provider}{route.path}",
                                           route_handler(mapping, route))
        runner = web.AppRunner(inner, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runner, self.url = runner, f"http://127.0.0.1:{port}"

    @web.middleware
    async def _only_us(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), self.secret):
            raise web.HTTPForbidden()
        return await handler(request)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
