"""Malformed credentials (issue 8, defect 8): a control character, NUL or non-UTF-8 byte in a key or token,
on any route and on WebSocket upgrades, is the dialect's 401, never a 5xx or a plain-text page."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.gateway.rawhttp import raw_request

VOICE = "21m00Tcm4TlvDq8ikWAM"
UPGRADE = (b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
           b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
# provider -> (a field of its error body, a request id header)
SHAPE = {"deepgram": ("err_code", "dg-request-id"), "elevenlabs": ("detail", "request-id"),
         "cartesia": ("error_code", "x-request-id")}

BAD_VALUES = [b"zqxw\x01def", b"zqxw\x7f", b"\xff\xfe\xfd", b"ab\xc3(", b"key\x1b[31m"]
BAD_QUERY = ["zqxw%0ddef", "zqxw%00def", "%ff%fe", "ab%0a%0dcd", "zqxw%7fdef", "zqxw%1b[31m"]


def _host_port(gw: Gateway) -> tuple[str, int]:
    u = urlsplit(gw.http)
    return u.hostname or "127.0.0.1", u.port or 80


async def send(gw: Gateway, method: str, target: str, headers: bytes, body: bytes = b"") -> tuple[int, dict, dict]:
    host, port = _host_port(gw)
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}".encode() + headers
    if body:
        head += b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    r = await raw_request(host, port, head, body)
    try:
        parsed = json.loads(r.body) if r.body else {}
    except ValueError:
        parsed = {"_raw": r.body.decode("latin-1")}
    return r.status, parsed, r.headers


HTTP_CASES = [
    ("deepgram", "POST", "/v1/speak", b"\r\nAuthorization: Token {v}", b'{"text": "hi"}'),
    ("deepgram", "POST", "/v1/listen", b"\r\nAuthorization: Token {v}", b'{"url": "http://x/a.wav"}'),
    ("deepgram", "POST", "/v1/auth/grant", b"\r\nAuthorization: Token {v}", b"{}"),
    ("deepgram", "GET", "/v1/projects", b"\r\nAuthorization: Bearer {v}", b""),
    ("elevenlabs", "POST", f"/v1/text-to-speech/{VOICE}", b"\r\nxi-api-key: {v}", b'{"text": "hi"}'),
    ("elevenlabs", "POST", "/v1/single-use-token/realtime_scribe", b"\r\nxi-api-key: {v}", b""),
    ("elevenlabs", "GET", "/v1/voices", b"\r\nxi-api-key: {v}", b""),
    ("cartesia", "POST", "/tts/bytes", b"\r\nX-API-Key: {v}\r\nCartesia-Version: 2026-03-01", b'{"transcript":"hi"}'),
    ("cartesia", "POST", "/access-token", b"\r\nAuthorization: Bearer {v}\r\nCartesia-Version: 2026-03-01", b"{}"),
]


@pytest.mark.parametrize(("provider", "method", "path", "headers", "body"), HTTP_CASES)
async def test_bad_bytes_in_header_credentials(gateway: Gateway, provider: str, method: str, path: str,
                                               headers: bytes, body: bytes) -> None:
    field, rid = SHAPE[provider]
    for value in BAD_VALUES:
        status, parsed, got = await send(gateway, method, path, headers.replace(b"{v}", value), body)
        if status == 400:  # refused by the HTTP parser itself (control bytes): JSON, echoing nothing
            assert parsed["error"]["status"] == 400 and got.get("x-request-id"), parsed
            assert value.decode("latin-1") not in json.dumps(parsed) and "zqxw" not in json.dumps(parsed)
            continue
        assert status == 401 and field in parsed and got.get(rid), (value, status, parsed)


QUERY_CASES = [
    ("deepgram", "POST", "/v1/speak?token={v}", b'{"text": "hi"}'),
    ("elevenlabs", "POST", f"/v1/text-to-speech/{VOICE}?token={{v}}", b'{"text": "hi"}'),
    ("cartesia", "POST", "/tts/bytes?api_key={v}&cartesia_version=2026-03-01", b'{"transcript": "hi"}'),
]


@pytest.mark.parametrize(("provider", "method", "path", "body"), QUERY_CASES)
async def test_bad_bytes_in_query_credentials(gateway: Gateway, provider: str, method: str, path: str,
                                              body: bytes) -> None:
    field, _ = SHAPE[provider]
    for value in BAD_QUERY:
        status, parsed, _ = await send(gateway, method, path.replace("{v}", value), b"", body)
        assert status == 401 and field in parsed, (value, status, parsed)


UPGRADES = [
    ("deepgram", "/v1/listen?encoding=linear16&sample_rate=16000", b"\r\nAuthorization: Token {v}"),
    ("deepgram", "/v1/speak", b"\r\nAuthorization: Token {v}"),
    ("deepgram", "/v2/listen?encoding=linear16&sample_rate=16000", b"\r\nSec-WebSocket-Protocol: token, {v}"),
    ("cartesia", "/stt/websocket?encoding=pcm_s16le&sample_rate=16000", b"\r\nX-API-Key: {v}"),
    ("cartesia", "/stt/turns/websocket?encoding=pcm_s16le&sample_rate=16000", b"\r\nX-API-Key: {v}"),
    ("elevenlabs", "/v1/speech-to-text/realtime", b"\r\nxi-api-key: {v}"),
]


@pytest.mark.parametrize(("provider", "path", "headers"), UPGRADES)
async def test_bad_bytes_on_websocket_upgrades(gateway: Gateway, provider: str, path: str, headers: bytes) -> None:
    for value in BAD_VALUES:
        status, parsed, got = await send(gateway, "GET", path, UPGRADE + headers.replace(b"{v}", value))
        # refused before the upgrade in the dialect's shape (or by the HTTP parser, echoing nothing), or
        # upgraded and then refused in-band
        assert status in (101, 400, 401), (value, status, parsed)
        assert "zqxw" not in json.dumps(parsed), parsed
        if status == 401:
            assert SHAPE[provider][0] in parsed or got.get("dg-error"), (value, parsed, got)
            assert "\x01" not in got.get("sec-websocket-protocol", "")


async def test_cartesia_tts_socket_with_a_bad_query_key_is_not_1011(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(f"{gateway.ws}/tts/websocket?api_key=zqxw%0ddef&cartesia_version=2026-03-01")
        except aiohttp.WSServerHandshakeError as e:
            assert e.status == 401
            return
        async with ws:
            await ws.send_json({"context_id": "a", "transcript": "hi", "model_id": "sonic-2",
                                "voice": {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"},
                                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}})
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT and "invalid_api_key" in msg.data, msg
            assert ws.close_code != 1011
