"""Two gateway processes sharing a real Redis: a single-use token minted on one works once, on either;
with Redis down, single-use tokens fail closed with a clear error."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import aiohttp

from tests.emulator.helpers import wav_bytes
from tests.fleet.procs import Proc, clean_env, start, wait_ready
from tests.fleet.redis_server import RedisServer

XI = {"xi-api-key": "any-key-works-on-the-emulator"}


async def _mint(http: aiohttp.ClientSession, gw: Proc) -> str:
    async with http.post(f"{gw.url}/v1/single-use-token/batch_scribe", headers=XI) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["token"])


async def _speak_ws(http: aiohttp.ClientSession, gw: Proc, token: str) -> tuple[int, list[Any]]:
    """ElevenLabs stream-input with a single-use token: (close code, JSON messages)."""
    url = (gw.url.replace("http://", "ws://") + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input"
           f"?output_format=pcm_16000&single_use_token={token}")
    async with http.ws_connect(url) as ws:
        for text in (" ", "Hello there. ", ""):
            await ws.send_json({"text": text})
        msgs = [m.json() async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        return ws.close_code or 0, msgs


async def _mint_ws(http: aiohttp.ClientSession, gw: Proc) -> str:
    async with http.post(f"{gw.url}/v1/single-use-token/tts_websocket", headers=XI) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["token"])


async def _transcribe(http: aiohttp.ClientSession, gw: Proc, token: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("model_id", "scribe_v1")
    form.add_field("file", wav_bytes("hello", 16000), filename="a.wav", content_type="audio/wav")
    async with http.post(f"{gw.url}/v1/speech-to-text?token={token}", data=form) as r:
        return r.status, await r.json(content_type=None)


async def test_single_use_token_works_once_across_gateways(redis_server: RedisServer, tmp_path: Path) -> None:
    env = clean_env(GATEWAY_REDIS_URL=redis_server.url, GATEWAY_TOKEN_SECRET=secrets.token_urlsafe(32))
    a = start(["serve", "--workers", "1"], env, tmp_path / "a.log")
    b = start(["serve", "--workers", "1"], env, tmp_path / "b.log")
    try:
        await wait_ready(a)
        await wait_ready(b)
        async with aiohttp.ClientSession() as http:
            token = await _mint(http, a)
            status, body = await _transcribe(http, b, token)  # minted on A, used on B
            assert status == 200 and "hello" in body["text"].lower(), body
            for gw in (a, b):  # used up everywhere
                status, body = await _transcribe(http, gw, token)
                assert status == 401 and "already used" in str(body), body

            # the WebSocket routes claim the token in Redis too (at the handshake)
            ws_token = await _mint_ws(http, a)
            code, msgs = await _speak_ws(http, b, ws_token)
            assert code == 1000 and any(m.get("audio") for m in msgs) and msgs[-1].get("isFinal"), msgs
            for gw in (a, b):
                code, msgs = await _speak_ws(http, gw, ws_token)
                assert code == 1008 and "already used" in str(msgs), (code, msgs)

            # Redis down: refused, never accepted unchecked.
            fresh = await _mint(http, b)
            redis_server.stop()
            status, body = await _transcribe(http, a, fresh)
            assert status == 401, body
            assert "shared state store is unreachable" in str(body)
            # Requests with an API key do not need the shared store.
            async with http.post(f"{a.url}/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM?output_format=pcm_16000",
                                 json={"text": "still up"}, headers=XI) as r:
                assert r.status == 200 and await r.read()
    finally:
        codes = [a.stop(), b.stop()]
    assert codes == [0, 0], a.output()[-2000:] + b.output()[-2000:]
    for gw in (a, b):
        assert "gateway.workers_without_shared_state" not in gw.output()
