"""WebSocket routes: a session (core + driver) on a client port, from an aiohttp upgrade or from code.

`ws_route_handler` is the aiohttp handler for a compiled WebSocket route; `run_ws` runs one session on
any port, and is what headless sessions (`headless.py`) use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from gateway.addons import ADDONS, Tap
from gateway.auth import find_credential
from gateway.dialects.common import AUTH, GRADIUM, SETTINGS, RequestContext, request_id_headers
from gateway.errors import GatewayError
from gateway.events import NOT_UPGRADED, Flow, SessionEnd
from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.mapping.params import RequestData
from gateway.session.core import SessionCore
from gateway.session.driver import Driver
from gateway.session.lifecycle import LIVE
from gateway.session.port import AiohttpPort, ClientPort, Refusal
from gateway.session.refuse import refusal, refusal_response
from gateway.wsinbox import InboxResponse

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ws_route_handler(mapping: CompiledMapping, route: CompiledRoute) -> Handler:
    assert route.ws is not None
    protocols = route.ws.spec.subprotocols

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(mapping, route)
        structlog.contextvars.bind_contextvars(request_id=ctx.request_id, provider=mapping.provider, route=route.name)
        app = request.app
        # an `InboxResponse`: its frames can be handled where they are parsed (`gateway/wsinbox.py`)
        ws = InboxResponse(protocols=protocols, max_msg_size=app[SETTINGS].limits.max_ws_message_bytes,
                           compress=False, autoping=True, heartbeat=None)
        ws.headers.update(request_id_headers(ctx))
        refused: list[Refusal] = []

        async def accept() -> ClientPort:
            await ws.prepare(request)
            return AiohttpPort(ws)

        try:
            req = RequestData(path=request.match_info, query=request.query, header=request.headers)
            flow = Flow(mapping.provider, route.name, "ws", request_id=ctx.request_id, started=ctx.started)
            await run_ws(app, ctx, req, flow, accept, refused.append)
        except ConnectionResetError:  # the client left during the upgrade: nobody's bug, nobody to answer
            # (an unprepared socket response cannot be returned: aiohttp would close it and fail)
            return ws if ws.prepared else web.Response(status=499)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "provider", "route")
        return refusal_response(refused[0]) if refused else ws

    return handle


async def run_ws(app: web.Application, ctx: RequestContext, req: RequestData, flow: Flow,
                 accept: Callable[[], Awaitable[ClientPort]], refuse: Callable[[Refusal], Any]) -> SessionEnd:
    """One WebSocket session on any client port: `accept` completes the upgrade and gives the port;
    `refuse` takes the HTTP answer that replaces it (routes with `refuse_upgrade`)."""
    ctx.req = req
    tap = Tap(app[ADDONS], flow)
    # before the upgrade: a sampled session's shadow leg starts here and connects meanwhile (told after the
    # 101, its first frames wait in its queue for that connection and the pair is flagged `lag_excluded`)
    tap.start()
    cred = find_credential(ctx.mapping.credentials, req)
    core = SessionCore(ctx, req, app[AUTH], cred, time.monotonic())
    if cred is not None:  # judged here because a single-use token's claim may need Redis (awaited)
        try:
            core.preauth = await app[AUTH].authorize(cred, ctx.mapping.provider, ctx.route.name)
        except GatewayError as err:
            core.preauth = err
    driver = Driver(core, app[GRADIUM], app[SETTINGS], tap)
    status, fields = "ok", {}
    live = app.get(LIVE)
    try:
        if ctx.mapping.errors.refuse_upgrade:
            # Credentials, parameters and Gradium's own verdict (key, voice, format) are known before
            # the 101, so a refusal is an HTTP status the client's SDK understands.
            try:
                await driver.run_commands_strict(core.prepare())
            except GatewayError as err:
                await driver.close_all()
                r = refusal(ctx, err)
                refuse(r)
                status, fields = str(r.status), {"http_status": r.status, "kind": err.kind, "message": err.message}
                return tap.end(status, **fields)
        await driver.run_commands_strict(core.warm())
        try:
            port = await accept()
        except BaseException:
            await driver.close_all()  # the client left during the upgrade: what `prepare` opened is closed
            raise
        if live is not None:
            live.add(driver)
        status = await driver.run(port)
        err = core.error
        fields = {"close_code": driver.close_code, "exc": driver.exc}
        if err is not None:
            fields.update(kind=err.kind, message=err.message)
            status = err.kind
        tap.upstream_request_id = core.upstream_request_id
        return tap.end(status, **fields)
    except BaseException as exc:
        # no upgrade (a plain GET: aiohttp's 400), or the client gone mid-way: the session still ends for
        # its addons, so a shadow leg started above has its input ended instead of waiting `max_unit_s`
        if not tap.ended:
            if isinstance(exc, web.HTTPException):  # nothing ran: `kind` says so on the session's line
                tap.end(str(exc.status), http_status=exc.status, kind=NOT_UPGRADED, message=exc.text or exc.reason)
            elif isinstance(exc, asyncio.CancelledError | ConnectionError):
                tap.end("client_gone")
            else:
                tap.end("internal", exc=exc)
        raise
    finally:
        if live is not None:
            live.discard(driver)
