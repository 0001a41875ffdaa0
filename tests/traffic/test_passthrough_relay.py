"""REST passthrough through the gateway's own vendor client (gateway/upstream/relay.py): one kept connection
for requests one after the other whatever their framing, HEAD, interim answers, big uploads streamed as they
come, and the vendor's socket closed when the client leaves mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.traffic.conftest import GW_KEY, Front, managed_auth, serve_vendor

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
    async with serve_vendor(app) as legacy:
        yield legacy, ports


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


@contextlib.asynccontextmanager
async def raw_vendor(*pieces: bytes) -> AsyncIterator[dict[str, dict[str, str]]]:
    """A vendor that answers every request with `pieces`, byte for byte, one write each, and then stays silent."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, EOFError, asyncio.CancelledError):
            await reader.readuntil(b"\r\n\r\n")
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)  # the gateway has relayed the previous piece (not asserted)
            await asyncio.sleep(HANG_GUARD_S)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield {"elevenlabs": {"base_url": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"}}
    finally:
        server.close()


@pytest.mark.parametrize("answer", [b"\x16\x03\x01\x02\x00not http at all\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"],
                         ids=["garbage", "bad-header", "two-lengths"])
async def test_a_vendor_answering_garbage_is_the_dialects_502(front: Front, answer: bytes) -> None:
    async with raw_vendor(answer) as legacy, front(legacy=legacy, auth=managed_auth(fallthrough="legacy")) as gw, \
            aiohttp.ClientSession() as s, asyncio.timeout(HANG_GUARD_S), \
            s.get(f"{gw.http}/elevenlabs/v1/history", headers={"xi-api-key": GW_KEY}) as r:
        body = await r.json()
        assert r.status == 502 and r.headers["Retry-After"], body
        assert body["detail"]["status"], body  # ElevenLabs' shape
        assert GW_KEY not in repr(body)


async def test_a_malformed_chunk_mid_answer_truncates_the_clients_answer(front: Front) -> None:
    good = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    async with raw_vendor(good, b"zz\r\n") as legacy, \
            front(legacy=legacy, auth=managed_auth(fallthrough="legacy")) as gw, aiohttp.ClientSession() as s, \
            asyncio.timeout(HANG_GUARD_S), \
            s.get(f"{gw.http}/elevenlabs/v1/history", headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200 and await r.content.readany() == b"hello"
        with pytest.raises(aiohttp.ClientPayloadError):  # not a whole answer: the client is told so
            await r.read()
