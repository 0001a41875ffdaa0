"""The floor for REST passthrough: a minimal aiohttp streaming proxy in front of the stand-in vendor (no
credentials check, no split, no metrics, no logs), on uvloop like `serve`. What aiohttp's own server and client
cost a relayed request, against which the gateway's passthrough is read.

    python bench/bare_proxy.py --port 8099 --vendor http://127.0.0.1:8100
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web
from yarl import URL

HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "xi-api-key"})


def app(vendor: str) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        session = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["xi-api-key"] = "vendor"
        async with session.request(request.method, URL(vendor + request.rel_url.raw_path_qs, encoded=True),
                                   headers=headers, data=await request.read()) as up:
            resp = web.StreamResponse(status=up.status, headers={k: v for k, v in up.headers.items()
                                                                 if k.lower() not in HOP})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        return resp

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["session"].close()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    application = web.Application()
    application.cleanup_ctx.append(session_ctx)
    application.router.add_get("/healthz", healthz)
    application.router.add_route("*", "/{tail:.*}", handle)
    return application


def serve(host: str, port: int, vendor: str) -> None:
    import uvloop

    uvloop.install()
    web.run_app(app(vendor), host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vendor", required=True, help="the stand-in vendor's base URL")
    a = ap.parse_args()
    serve(a.host, a.port, a.vendor)
