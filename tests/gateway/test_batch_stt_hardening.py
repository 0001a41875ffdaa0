"""Batch speech-to-text after a caller error (issue 8, defects 1 and 8): with a pooled Gradium socket for
the key, empty or corrupt audio, an empty file part or a refused `url` get the dialect's 4xx at once
(never a hang), the upstream socket is closed or idle, and a bad key gets the dialect's 401."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.audiocheck import wav_bytes
from tests.conftest import Gateway, assert_upstream_released

KEY = "gsk_batch"
WAV = wav_bytes("one two three", 16000)


def el_form(data: bytes | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model_id", "scribe_v1")
    if data is not None:
        form.add_field("file", data, filename="a.wav", content_type="audio/wav")
    return form


ROUTES = {
    "deepgram": ("/v1/listen", {"Authorization": f"Token {KEY}", "Content-Type": "audio/wav"}),
    "elevenlabs": ("/v1/speech-to-text", {"xi-api-key": KEY}),
    "cartesia": ("/stt", {"Authorization": f"Bearer {KEY}", "Cartesia-Version": "2026-03-01"}),
}


def cartesia_form(data: bytes | None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "ink-whisper")
    if data is not None:
        form.add_field("file", data, filename="a.wav", content_type="audio/wav")
    return form


async def post(gw: Gateway, provider: str, audio: bytes | None, key: str = KEY) -> tuple[int, bytes]:
    path, headers = ROUTES[provider]
    headers = {k: v.replace(KEY, key) for k, v in headers.items()}
    data: object
    if provider == "deepgram":
        data = audio if audio is not None else b""
    elif provider == "elevenlabs":
        data = el_form(audio)
    else:
        data = cartesia_form(audio)
    async with aiohttp.ClientSession() as s:
        async with asyncio.timeout(10):  # the defect was "no answer, ever"
            async with s.post(gw.http + path, data=data, headers=headers) as r:
                return r.status, await r.read()


@pytest.mark.parametrize("provider", ["deepgram", "elevenlabs", "cartesia"])
async def test_caller_errors_after_a_pooled_socket_answer_at_once(gateway: Gateway, provider: str) -> None:
    status, body = await post(gateway, provider, WAV)
    assert status == 200, body  # leaves a pooled Gradium socket for the key
    for bad in (b"", b"RIFF\x00\x00\x00\x00WAVEjunkjunk" * 3, b"\x00" * 7):
        status, body = await post(gateway, provider, bad if bad or provider == "deepgram" else None)
        # junk may decode to silence (an empty transcript); never a 5xx or a hang, and no audio is a 4xx
        assert 400 <= status < 500 if not bad else status < 500, (bad[:10], status, body)
        await assert_upstream_released(gateway)
    status, _ = await post(gateway, provider, WAV)  # and the key still works
    assert status == 200


async def test_a_refused_url_after_a_pooled_socket(gateway: Gateway) -> None:
    path, headers = ROUTES["deepgram"]
    async with aiohttp.ClientSession() as s:
        async with s.post(gateway.http + path, data=WAV, headers=headers) as r:
            assert r.status == 200
        async with asyncio.timeout(10), s.post(gateway.http + path, json={"url": "http://10.0.0.1/a.wav"},
                                               headers={"Authorization": headers["Authorization"]}) as r:
            assert r.status == 400
    await assert_upstream_released(gateway)


@pytest.mark.parametrize(("provider", "field"), [("deepgram", b"err_code"), ("elevenlabs", b"detail"),
                                                 ("cartesia", b"error_code")])
async def test_a_bad_key_on_batch_stt_is_the_dialects_401(gateway: Gateway, provider: str, field: bytes) -> None:
    for _ in range(2):  # also after a pooled socket exists for another key
        status, body = await post(gateway, provider, WAV, key="revoked_x")
        assert status == 401 and field in body, body
        await post(gateway, provider, WAV)
    await assert_upstream_released(gateway)
