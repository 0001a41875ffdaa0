"""How a passthrough answer is streamed (specs/traffic.md §2): the vendor's headers reach the client as soon
as they come (before any body), a body that came with them leaves with them, and a vendor that breaks off
mid-answer leaves the client with the same truncated body, not a new status."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.traffic.conftest import GW_KEY, Front, vendor

VOICE = "21m00Tcm4TlvDq8ikWAM"
HANG_GUARD_S = 30  # only stops a test that would otherwise hang; nothing is asserted about time


def post(s: aiohttp.ClientSession, base: str) -> aiohttp.client._RequestContextManager:
    return s.post(f"{base}/v1/text-to-speech/{VOICE}/stream", json={"text": "Hi"}, headers={"xi-api-key": GW_KEY})


async def test_headers_reach_the_client_before_the_vendor_has_any_body(front: Front) -> None:
    """A vendor that answers its headers, then thinks: the client has the status and the vendor's headers
    while the body does not exist yet (the body is only released once the client saw them)."""
    release = asyncio.Event()

    async def speak(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"request-id": "req-1", "Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        await release.wait()
        await resp.write(b"first")
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    async with vendor(speak) as legacy, front(legacy=legacy) as gw, aiohttp.ClientSession() as s, \
            asyncio.timeout(HANG_GUARD_S), post(s, gw.http) as r:
        assert r.status == 200 and r.headers["request-id"] == "req-1"
        assert r.headers["x-gateway-target"] == "legacy" and r.content.at_eof() is False
        release.set()
        assert await r.read() == b"firstsecond"


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_sent_with_the_headers_is_relayed_whole(front: Front, streamed: bool) -> None:
    body = bytes(range(256)) * 64

    async def speak(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not streamed:
            return web.Response(body=body, content_type="audio/pcm", headers={"request-id": "req-2"})
        resp = web.StreamResponse(headers={"request-id": "req-2", "Content-Type": "audio/pcm"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(body[:1000])  # aiohttp sends these bytes in the same write as the headers
        await resp.write(body[1000:])
        await resp.write_eof()
        return resp

    async with vendor(speak) as legacy, front(legacy=legacy) as gw, aiohttp.ClientSession() as s:
        for _ in range(3):  # a pooled connection to the vendor, reused: every answer whole, none mixed
            async with post(s, gw.http) as r:
                assert r.status == 200 and await r.read() == body and r.headers["request-id"] == "req-2"
                assert (r.headers.get("Content-Length") == str(len(body))) is not streamed


async def test_a_vendor_breaking_off_mid_answer_truncates_the_clients_body(front: Front) -> None:
    async def speak(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Length": "1000", "Content-Type": "audio/pcm"})
        await resp.prepare(request)
        await resp.write(b"x" * 100)
        assert request.transport is not None
        request.transport.close()  # 900 bytes short
        return resp

    async with vendor(speak) as legacy, front(legacy=legacy) as gw, aiohttp.ClientSession() as s, \
            post(s, gw.http) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
