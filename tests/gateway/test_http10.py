"""HTTP/1.0 clients (issue 8, defect 12): streamed routes answer them without chunked encoding (the body
ends with the connection), never a 500."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import Gateway
from tests.gateway.rawhttp import raw_request

VOICE = "21m00Tcm4TlvDq8ikWAM"
CA = b"\r\nX-API-Key: k\r\nCartesia-Version: 2026-03-01"
CA_BODY = (b'{"model_id": "sonic-2", "transcript": "hello there", "voice": {"mode": "id", "id": '
           b'"a0e99841-438c-4a64-b679-ae501e7d6091"}, "output_format": {"container": "raw", "encoding": "pcm_s16le",'
           b' "sample_rate": 16000}}')


@pytest.mark.parametrize(("path", "headers", "body", "kind"), [
    (f"/v1/text-to-speech/{VOICE}/stream?output_format=pcm_16000", b"\r\nxi-api-key: k", b'{"text": "hello there"}',
     b""),
    (f"/v1/text-to-speech/{VOICE}/stream/with-timestamps", b"\r\nxi-api-key: k", b'{"text": "hello there"}',
     b"audio_base64"),
    ("/v1/speak?encoding=linear16&sample_rate=16000", b"\r\nAuthorization: Token k", b'{"text": "hello there"}',
     b""),
    ("/tts/sse", CA, CA_BODY, b"event: chunk"),
    ("/tts/bytes", CA, CA_BODY, b""),
])
async def test_streamed_routes_answer_http10_without_chunking(gateway: Gateway, path: str, headers: bytes,
                                                              body: bytes, kind: bytes) -> None:
    u = urlsplit(gateway.http)
    head = (f"POST {path} HTTP/1.0\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            .encode() + headers)
    r = await raw_request(u.hostname or "127.0.0.1", u.port or 80, head, body)
    assert r.status == 200, (r.status, r.body[:300])
    assert "chunked" not in r.header("transfer-encoding") if r.header("transfer-encoding") else True
    assert len(r.body) > 1000 and kind in r.body
