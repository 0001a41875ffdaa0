"""Passthrough to the stand-in vendor: credentials swapped, everything else as sent (specs/traffic.md §2)."""

from __future__ import annotations

import hashlib

import aiohttp
import orjson
import pytest
from elevenlabs.client import AsyncElevenLabs

from gateway.dialects.common import METRICS
from tests.audiocheck import expected_words, speech, words
from tests.standin import StandIn
from tests.traffic.conftest import GW_KEY, VENDOR_KEYS, Front, managed_auth, vendor

TEXT = "Hello world. This gateway speaks."
RACHEL = "21m00Tcm4TlvDq8ikWAM"


def no_gateway_key(seen_headers: list[tuple[str, str]], query: str = "", frames: list[tuple[str, bytes]] = ()) -> bool:
    blob = repr(seen_headers) + query + repr(frames)
    return GW_KEY not in blob


async def test_rest_tts_swaps_the_key_and_keeps_the_rest_byte_for_byte(standin: StandIn, front: Front) -> None:
    body = orjson.dumps({"text": TEXT, "model_id": "eleven_flash_v2_5"})
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.http}/elevenlabs/v1/text-to-speech/{RACHEL}/stream?output_format=pcm_16000&optimize=1"
        headers = {"xi-api-key": GW_KEY, "Content-Type": "application/json", "X-App-Trace": "abc 123",
                   "X-Gateway-Session": "conv-1", "Connection": "keep-alive, X-Hop", "X-Hop": "drop me"}
        async with s.post(url, data=body, headers=headers) as r:
            audio = await r.read()
            assert r.status == 200 and r.headers["x-gateway-target"] == "legacy"
            assert r.headers["character-cost"] == str(len(TEXT)) and r.headers["request-id"]  # the vendor's
    import numpy as np
    assert words(np.frombuffer(audio, "<i2"), 16000) == expected_words(TEXT)
    seen = standin.last("/text-to-speech/")
    assert seen.method == "POST" and seen.path == f"/v1/text-to-speech/{RACHEL}/stream"  # provider prefix gone
    assert seen.query == "output_format=pcm_16000&optimize=1"
    assert seen.header("xi-api-key") == VENDOR_KEYS["elevenlabs"] and no_gateway_key(seen.headers)
    assert seen.header("X-App-Trace") == "abc 123" and seen.header("Content-Type") == "application/json"
    assert seen.header("X-Gateway-Session") is None and seen.header("X-Hop") is None  # gateway's and hop-by-hop
    assert seen.body_sha256 == hashlib.sha256(body).hexdigest()


async def test_stt_upload_streams_to_the_vendor_untouched(standin: StandIn, front: Front) -> None:
    audio = speech("one two three", 16000)
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.http}/v1/listen?encoding=linear16&sample_rate=16000&token=ignored&tag=t1"

        async def chunks():  # a chunked upload: no Content-Length, nothing buffered on the way
            for i in range(0, len(audio), 8000):
                yield audio[i : i + 8000]

        async with s.post(url, data=chunks(), headers={"Authorization": f"Token {GW_KEY}",
                                                       "Content-Type": "audio/l16"}) as r:
            got = await r.json()
            assert r.status == 200 and r.headers["x-gateway-target"] == "legacy" and r.headers["dg-request-id"]
    assert got["results"]["channels"][0]["alternatives"][0]["transcript"].lower().split() == ["one", "two", "three"]
    seen = standin.last("/v1/listen")
    assert seen.header("Authorization") == f"Token {VENDOR_KEYS['deepgram']}"
    assert seen.query == "encoding=linear16&sample_rate=16000&tag=t1"  # query credential stripped, rest kept
    assert seen.body_sha256 == hashlib.sha256(audio).hexdigest() and no_gateway_key(seen.headers, seen.query)


async def test_deepgram_socket_answers_the_subprotocol_and_relays_frames_and_close(standin: StandIn,
                                                                                  front: Front) -> None:
    audio = speech("hello world", 16000)
    sent: list[tuple[str, bytes]] = []
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true"
        async with s.ws_connect(url, protocols=("token", GW_KEY)) as ws:
            assert ws.protocol == "token"  # browsers drop a socket whose offer is not answered
            assert ws._response.headers["x-gateway-target"] == "legacy"
            assert ws._response.headers.get("dg-request-id")  # the vendor's 101 headers
            await ws.send_str('{"type": "KeepAlive"}')
            sent.append(("TEXT", b'{"type": "KeepAlive"}'))
            for i in range(0, len(audio), 3200):
                await ws.send_bytes(audio[i : i + 3200])
                sent.append(("BINARY", audio[i : i + 3200]))
            await ws.send_str('{"type":"CloseStream"}')
            sent.append(("TEXT", b'{"type":"CloseStream"}'))
            got = [m async for m in ws]
            assert ws.close_code == 1000
    seen = standin.last("/v1/listen")
    assert seen.frames_in == sent  # every frame, its type and its bytes
    assert [(("TEXT" if m.type == aiohttp.WSMsgType.TEXT else "BINARY"), m.data.encode()) for m in got] == \
        seen.frames_out
    assert seen.header("Authorization") == f"Token {VENDOR_KEYS['deepgram']}"
    assert seen.header("Sec-WebSocket-Protocol") is None and no_gateway_key(seen.headers, seen.query)


async def test_vendor_close_code_and_reason_reach_the_client(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.ws}/v1/listen?encoding=linear16&sample_rate=16000"
        async with s.ws_connect(url, headers={"Authorization": f"Token {GW_KEY}"}) as ws:
            await ws.send_str("{not json")
            msgs = [m async for m in ws]
    seen = standin.last("/v1/listen")
    assert seen.close_code is not None and seen.close_code != 1000
    assert ws.close_code == seen.close_code
    assert orjson.loads(msgs[0].data)["type"] == "Error"


async def test_elevenlabs_first_message_credential_is_stripped(standin: StandIn, front: Front) -> None:
    first = {"text": " ", "xi_api_key": GW_KEY, "voice_settings": {"stability": 0.5}, "generation_config": {}}
    later = [b'{"text": "Hello world. "}', b'{"text": ""}']
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000"
        async with s.ws_connect(url) as ws:
            await ws.send_str(orjson.dumps(first).decode())
            for f in later:
                await ws.send_str(f.decode())
            out = [orjson.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert out[-1]["isFinal"] is True and any(o.get("audio") for o in out)
    seen = standin.last("/stream-input")
    assert seen.header("xi-api-key") == VENDOR_KEYS["elevenlabs"]
    assert orjson.loads(seen.frames_in[0][1]) == {k: v for k, v in first.items() if k != "xi_api_key"}
    assert [f for _, f in seen.frames_in[1:]] == later  # only the first message is re-serialized
    assert no_gateway_key(seen.headers, seen.query, seen.frames_in)


async def test_wrong_vendor_key_is_the_vendors_own_401(standin: StandIn, front: Front) -> None:
    auth = managed_auth(legacy_keys={**VENDOR_KEYS, "elevenlabs": "sk_wrong"})
    async with front(auth=auth) as gw:
        el = AsyncElevenLabs(api_key=GW_KEY, base_url=gw.http)
        from elevenlabs.core.api_error import ApiError

        with pytest.raises(ApiError) as e:
            b"".join([c async for c in el.text_to_speech.convert(RACHEL, text=TEXT)])
    assert e.value.status_code == 401
    assert standin.last("/text-to-speech/").header("xi-api-key") == "sk_wrong"


async def test_deepgram_refusal_is_replayed_with_status_and_headers(standin: StandIn, front: Front) -> None:
    auth = managed_auth(legacy_keys={**VENDOR_KEYS, "deepgram": "dg_revoked"})
    async with front(auth=auth) as gw, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(f"{gw.ws}/v1/listen", headers={"Authorization": f"Token {GW_KEY}"})
    assert e.value.status == 401 and e.value.headers is not None
    assert e.value.headers.get("dg-error") and e.value.headers.get("x-gateway-target") == "legacy"


async def test_gateway_key_unknown_is_refused_before_the_vendor(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s, s.post(
            f"{gw.http}/v1/text-to-speech/{RACHEL}", json={"text": "hi"},
            headers={"xi-api-key": "not-a-gateway-key"}) as r:
        assert r.status == 401
    assert not [x for x in standin.seen if "/text-to-speech/" in x.path]


async def test_cartesia_query_credential_stripped_version_kept(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession() as s:
        url = f"{gw.ws}/tts/websocket?api_key={GW_KEY}&cartesia_version=2026-03-01"
        async with s.ws_connect(url) as ws:
            await ws.send_str(orjson.dumps({
                "model_id": "sonic-3", "transcript": "Hi there", "context_id": "c1", "continue": False,
                "voice": {"mode": "id", "id": "f786b574-daa5-4673-aa0c-cbe3e8534c02"},
                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}}).decode())
            while True:
                m = await ws.receive_json(timeout=10)
                if m.get("type") == "done":
                    break
    seen = standin.last("/tts/websocket")
    assert seen.query == "cartesia_version=2026-03-01"
    assert seen.header("X-API-Key") == VENDOR_KEYS["cartesia"]


async def test_base_url_with_a_path_prefix(standin: StandIn, front: Front, tls_files: dict) -> None:
    legacy = {"elevenlabs": {"base_url": standin.https + "/elevenlabs", "ca_file": str(tls_files["ca"])}}
    async with front(legacy=legacy) as gw, aiohttp.ClientSession() as s, s.post(
            f"{gw.http}/v1/text-to-speech/{RACHEL}/stream", json={"text": "Hi"}, headers={"xi-api-key": GW_KEY}) as r:
        assert r.status == 200 and await r.read()
    assert standin.seen[-1].path == f"/elevenlabs/v1/text-to-speech/{RACHEL}/stream"


@pytest.mark.parametrize(("where", "status", "kind"), [("unreachable", 503, "connect"), ("tls", 502, "tls")])
async def test_gateway_failures_are_dialect_shaped_with_retry_after(standin: StandIn, front: Front, where: str,
                                                                   status: int, kind: str) -> None:
    if where == "unreachable":
        legacy = {"deepgram": {"base_url": "https://127.0.0.1:9", "connect_timeout_s": 2}}
    else:
        legacy = {"deepgram": {"base_url": standin.https}}  # the test CA is not trusted
    async with front(legacy=legacy) as gw, aiohttp.ClientSession() as s:
        async with s.post(f"{gw.http}/v1/speak", json={"text": "hi"},
                          headers={"Authorization": f"Token {GW_KEY}"}) as r:
            body = await r.json()
            assert r.status == status and r.headers["Retry-After"] and r.headers["x-gateway-target"] == "legacy"
            assert body["err_code"] in ("SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR")  # Deepgram's shape
            assert GW_KEY not in repr(body)
        metrics = gw.front[METRICS].registry  # type: ignore[attr-defined]
        assert metrics.get_sample_value("gateway_passthrough_upstream_errors_total",
                                        {"provider": "deepgram", "kind": kind}) == 1


async def test_compressed_answers_are_not_decompressed(standin: StandIn, front: Front) -> None:
    async with front() as gw, aiohttp.ClientSession(auto_decompress=False) as s, s.post(
            f"{gw.http}/v1/text-to-speech/{RACHEL}/stream", json={"text": "Hi"},
            headers={"xi-api-key": GW_KEY, "Accept-Encoding": "gzip"}) as r:
        await r.read()
    assert standin.seen[-1].header("Accept-Encoding") == "gzip"  # the client's own, not aiohttp's default


async def test_a_vendor_cookie_goes_back_to_its_client_and_never_into_the_next_request(front: Front) -> None:
    """The passthrough client keeps no cookie jar: a vendor's Set-Cookie reaches the client whose request
    caused it, and the next request (another tenant's, maybe) carries only its own client's cookies."""
    from aiohttp import web

    cookies_seen: list[str | None] = []

    async def speak(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        resp = web.Response(body=b"\0\0" * 160, content_type="audio/pcm")
        resp.headers["Set-Cookie"] = "vendor_session=abc; Path=/"
        return resp

    # a host name, not an IP: aiohttp's default jar keeps cookies only from named hosts
    async with vendor(speak, host="localhost") as legacy, front(legacy=legacy) as gw:
        url = f"{gw.http}/v1/text-to-speech/{RACHEL}/stream"
        for own in (None, "mine=1"):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s, s.post(
                    url, json={"text": "Hi"}, headers={"xi-api-key": GW_KEY, **({"Cookie": own} if own else {})}
            ) as r:
                assert r.status == 200 and r.headers["Set-Cookie"] == "vendor_session=abc; Path=/"
    assert cookies_seen == [None, "mine=1"]
