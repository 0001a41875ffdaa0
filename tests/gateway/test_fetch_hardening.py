"""Remote audio fetches (issue 8, defects 4 and 5): the normalised URL is what is compared and fetched,
private addresses need an explicit name, and no cookie rides from one caller's fetch to another's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.audiocheck import wav_bytes
from tests.conftest import Emulator, Gateway, gateway_settings, run_app, start_gateway

DG = {"Authorization": "Token gsk_fetch"}
WAV = wav_bytes("one two", 16000)


class Media:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.cookies: list[str | None] = []
        self.base = ""


@pytest.fixture
async def media() -> AsyncIterator[Media]:
    m = Media()

    async def audio(request: web.Request) -> web.Response:
        m.hits.append(request.path)
        m.cookies.append(request.headers.get("Cookie"))
        resp = web.Response(body=WAV, content_type="audio/wav")
        if request.match_info["name"] == "set.wav":
            resp.set_cookie("sid", "caller-one-session")
        return resp

    async def secret(request: web.Request) -> web.Response:
        m.hits.append(request.path)
        return web.Response(body=WAV, content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/audio/{name}", audio)
    app.router.add_get("/secret", secret)
    async with run_app(app) as (port, _):
        m.base = f"http://127.0.0.1:{port}"
        yield m


async def listen(gw: Gateway, url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(gw.http + "/v1/listen", json={"url": url}, headers=DG) as r:
        return r.status, await r.json()


@pytest.fixture
async def gw(emulator: Emulator, tls_files: dict[str, Path], media: Media) -> AsyncIterator[Gateway]:
    settings = gateway_settings(emulator, tls_files, fetch={"allow": [media.base + "/audio/"]})
    async with start_gateway(settings, emulator) as g:
        yield g


async def test_dot_segments_cannot_leave_the_allowed_prefix(gw: Gateway, media: Media) -> None:
    assert (await listen(gw, media.base + "/audio/ok.wav"))[0] == 200
    for path in ("/audio/../secret", "/audio/%2e%2e/secret", "/audio/.%2e/secret", "/audio/%2E%2E/secret",
                 "/audio/./../secret", "/audio/..%2fsecret/../../secret"):
        status, body = await listen(gw, media.base + path)
        assert status == 400 and "does not fetch" in body["err_msg"], (path, body)
    for url in (media.base.replace("127.0.0.1", "user@127.0.0.1") + "/audio/ok.wav", "file:///etc/passwd",
                "http://" + "a" * 5000 + "/audio/x.wav"):
        assert (await listen(gw, url))[0] == 400
    assert "/secret" not in media.hits


async def test_host_names_resolving_to_private_addresses_need_naming(emulator: Emulator, tls_files: dict[str, Path],
                                                                     media: Media) -> None:
    by_name = media.base.replace("127.0.0.1", "localhost")
    settings = gateway_settings(emulator, tls_files, fetch={"allow": [by_name + "/audio/"]})
    async with start_gateway(settings, emulator) as gw:
        status, body = await listen(gw, by_name + "/audio/ok.wav")
        assert status == 400 and "private address" in body["err_msg"], body
    assert media.hits == []
    settings = gateway_settings(emulator, tls_files,
                                fetch={"allow": [by_name + "/audio/"], "private_hosts": ["localhost"]})
    async with start_gateway(settings, emulator) as gw:
        assert (await listen(gw, by_name + "/audio/ok.wav"))[0] == 200


async def test_no_cookie_travels_between_callers(emulator: Emulator, tls_files: dict[str, Path],
                                                 media: Media) -> None:
    by_name = media.base.replace("127.0.0.1", "localhost")  # a cookie jar keeps cookies of named hosts only
    settings = gateway_settings(emulator, tls_files,
                                fetch={"allow": [by_name + "/audio/"], "private_hosts": ["localhost"]})
    async with start_gateway(settings, emulator) as gw:
        assert (await listen(gw, by_name + "/audio/set.wav"))[0] == 200
        assert (await listen(gw, by_name + "/audio/check.wav"))[0] == 200
    assert media.cookies == [None, None]
