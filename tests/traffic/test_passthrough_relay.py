"""REST passthrough through the gateway's own vendor client (gateway/upstream/relay.py): one kept connection
for requests one after the other whatever their framing, HEAD, interim answers, big uploads streamed as they
come, and the vendor's socket closed when the client leaves mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from tests.traffic.conftest import GW_KEY, Front, managed_auth

HANG_GUARD_S = 30  # only stops a test that would otherwise hang; nothing is asserted about time
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def any_vendor(handle: Handler) -> AsyncIterator[tuple[dict[str, dict[str, str]], list[int]]]:
    """A vendor answering every path with `handle`; yields the `legacy` section and the client ports of the
    requests it served (one port: one connection)."""
    ports: list[int] = []

    async def record(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        return await handle(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield {"elevenlabs": {"base_url": f"http://127.0.0.1:{port}"}}, ports
    finally:
        await runner.cleanup()


async def test_requests_one_after_the_other_share_one_vendor_connection_and_never_mix(front: Front) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        kind = request.match_info["tail"]
        if kind == "chunked":
            resp = web.StreamResponse(headers={"X-Kind": kind})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b"chunk-" + body)
            await resp.write(b"-tail")
            await resp.write_eof()
            return resp
        if kind == "empty":
            return web.Response(status=204, headers={"X-Kind": kind})
        return web.Response(body=b"len-" + body, headers={"X-Kind": kind})

    async with any_vendor(handle) as (legacy, ports), \
            front(legacy=legacy, auth=managed_auth(fallthrough="legacy")) as gw, \
            aiohttp.ClientSession() as s, asyncio.timeout(HANG_GUARD_S):
        base = f"{gw.http}/elevenlabs/"
        h = {"xi-api-key": GW_KEY}
        for _ in range(2):
            async with s.post(base + "length", data=b"a", headers=h) as r:
                assert r.status == 200 and await r.read() == b"len-a" and r.headers["X-Kind"] == "length"
            async with s.post(base + "chunked", data=b"b", headers=h) as r:
                assert await r.read() == b"chunk-b-tail" and r.headers["X-Kind"] == "chunked"
            async with s.head(base + "length", headers=h) as r:  # the vendor's length, and no body
                assert r.status == 200 and r.headers["Content-Length"] == "4" and await r.read() == b""
            async with s.delete(base + "empty", headers=h) as r:
                assert r.status == 204 and await r.read() == b"" and r.headers["X-Kind"] == "empty"
        assert len(ports) == 8 and len(set(ports)) == 1


async def test_an_interim_100_continue_is_not_the_answer(front: Front) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=hashlib.sha256(await request.read()).hexdigest().encode())

    body = bytes(range(256)) * 400  # above the size the gateway reads whole: streamed as it comes
    async with any_vendor(handle) as (legacy, _), front(legacy=legacy, auth=managed_auth(fallthrough="legacy")) as gw, \
            aiohttp.ClientSession() as s, asyncio.timeout(HANG_GUARD_S), \
            s.post(f"{gw.http}/elevenlabs/v1/upload", data=body, expect100=True,
                   headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200 and await r.text() == hashlib.sha256(body).hexdigest()


async def test_a_client_leaving_mid_answer_closes_the_vendor_connection(front: Front) -> None:
    vendor_saw_the_end = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"x" * 4096)
                await asyncio.sleep(0.01)
        except (ConnectionError, RuntimeError):
            vendor_saw_the_end.set()
        return resp

    async with any_vendor(handle) as (legacy, _), front(legacy=legacy, auth=managed_auth(fallthrough="legacy")) as gw, \
            asyncio.timeout(HANG_GUARD_S):
        async with aiohttp.ClientSession() as s, s.get(f"{gw.http}/elevenlabs/v1/forever",
                                                       headers={"xi-api-key": GW_KEY}) as r:
            assert await r.content.readany()
        await vendor_saw_the_end.wait()
