"""Errors outside any route (issue 8, defect 9): unknown paths, wrong methods, refused handshakes and
requests aiohttp's parser refuses get the shape of the provider whose path it is, with a request id,
and never echo a header."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.gateway.rawhttp import raw_request

# provider -> (a field of its error body, its request id header)
SHAPE = {"deepgram": ("err_code", "dg-request-id"), "elevenlabs": ("detail", "request-id"),
         "cartesia": ("error_code", "x-request-id")}


@pytest.mark.parametrize(("method", "path", "provider", "status"), [
    ("DELETE", "/cartesia/tts/bytes", "cartesia", 405),
    ("DELETE", "/tts/bytes", "cartesia", 405),
    ("GET", "/tts/nope", "cartesia", 404),
    ("GET", "/stt/unknown/thing", "cartesia", 404),
    ("PUT", "/v1/listen", "deepgram", 405),
    ("GET", "/deepgram/v1/nothing", "deepgram", 404),
    ("GET", "/v1/speak/extra", "deepgram", 404),
    ("GET", "/v2/listen/more", "deepgram", 404),
    ("PATCH", "/v1/text-to-speech/abc", "elevenlabs", 405),
    ("GET", "/elevenlabs/v1/none", "elevenlabs", 404),
    ("GET", "/v1/text-to-dialogue/x/y/z", "elevenlabs", 404),
])
async def test_unrouted_requests_take_the_paths_provider_shape(gateway: Gateway, method: str, path: str,
                                                               provider: str, status: int) -> None:
    field, rid = SHAPE[provider]
    async with aiohttp.ClientSession() as s, s.request(method, gateway.http + path) as r:
        body = await r.json()
        assert r.status == status and field in body and r.headers.get(rid), (r.status, body, dict(r.headers))
        if status == 405:
            assert r.headers.get("Allow")
        if provider == "deepgram":
            assert r.headers.get("dg-error")


async def test_unrouted_with_a_credential_picks_its_provider(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(gateway.http + "/v1/unknown", headers={"Authorization": "Token k"}) as r:
            assert r.status == 404 and "err_code" in await r.json()
        async with s.get(gateway.http + "/v1/unknown", headers={"xi-api-key": "k"}) as r:
            assert r.status == 404 and "detail" in await r.json()


@pytest.mark.parametrize("path", ["/v1/listen", "/v2/listen", "/v1/speak?encoding=linear16"])
async def test_deepgram_handshake_refusals_carry_dg_error(gateway: Gateway, path: str) -> None:
    u = urlsplit(gateway.http)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    heads = [
        f"GET {path} HTTP/1.1\r\nHost: h\r\nAuthorization: Token k",  # a plain GET on a socket route
        f"GET {path} HTTP/1.1\r\nHost: h\r\nAuthorization: Token k\r\nUpgrade: websocket\r\nConnection: Upgrade",
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
        "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",  # no credential
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99"
        "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Token k",
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
        "\r\nSec-WebSocket-Key: short\r\nAuthorization: Token k",
    ]
    for head in heads:
        r = await raw_request(host, port, head.encode())
        assert 400 <= r.status < 500 and r.header("dg-error") and r.header("dg-request-id"), (head, r)


async def test_parser_errors_are_json_and_echo_nothing(gateway: Gateway) -> None:
    u = urlsplit(gateway.http)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    for head in [b"POST /v1/speak HTTP/1.1\r\nHost: h\r\nAuthorization: Token sk_secret_\x01value",
                 b"POST /v1/speak HTTP/1.1\r\nHost: h\r\nX-Sk-Secret\x00Name: v",
                 b"POST /v1/speak HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 7",
                 b"GET /v1/\x01speak HTTP/1.1\r\nHost: h",
                 b"G\x01T / HTTP/1.1\r\nHost: h",
                 b"POST /v1/speak HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nsk_secret_x"]:
        r = await raw_request(host, port, head)
        assert r.status == 400 and r.header("content-type") == "application/json", (head, r)
        assert b"sk_secret" not in r.body and b"Sk-Secret" not in r.body and r.header("x-request-id"), r.body
