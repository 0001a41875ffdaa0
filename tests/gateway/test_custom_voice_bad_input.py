"""Bad input and Gradium refusals on the custom voice and dictionary routes: each a provider-shaped 4xx."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.emulator import EmulatorSettings, create_emulator_app
from tests.audiocheck import wav_bytes
from tests.conftest import Emulator, Gateway, gateway_settings, run_app, start_gateway

H_EL = {"xi-api-key": "gsk_test"}
H_CA = {"X-API-Key": "gsk_test", "Cartesia-Version": "2026-03-01"}


def form(**fields: object) -> aiohttp.FormData:
    f = aiohttp.FormData()
    for k, v in fields.items():
        if isinstance(v, bytes):
            f.add_field(k, v, filename=f"{k}.wav", content_type="audio/wav")
        else:
            f.add_field(k, str(v))
    return f


async def test_elevenlabs_bad_input(gateway: Gateway) -> None:
    base = gateway.http
    async with aiohttp.ClientSession(headers=H_EL) as s:
        cases = [
            ("POST", "/v1/voices/add", {"data": b"not multipart", "headers": {"Content-Type": "text/plain"}}, 422),
            ("POST", "/v1/voices/add", {"data": form(files=wav_bytes("x", 24000))}, 422),  # no name
            ("POST", "/v1/voices/add", {"data": form(name="N", files=wav_bytes("x", 24000), labels="{oops")}, 422),
            ("POST", "/v1/voices/add", {"data": form(name="N", files="a text field, not a file")}, 422),
            ("POST", "/v1/voices/add", {"data": form(name="N")}, 422),  # no files
            ("POST", "/v1/pronunciation-dictionaries/add-from-rules", {"json": {"name": "x", "rules": "no"}}, 422),
            ("POST", "/v1/pronunciation-dictionaries/add-from-rules", {"json": {"name": "x", "rules": [
                {"type": "alias", "string_to_replace": "", "alias": "y"}]}}, 422),
            ("POST", "/v1/pronunciation-dictionaries/add-from-rules", {"data": b"{", "headers": {
                "Content-Type": "application/json"}}, 422),
            ("POST", "/v1/text-to-voice/design", {"json": {}}, 422),
            ("POST", "/v1/text-to-voice/design?output_format=mp3_1_2", {"json": {"voice_description": "x"}}, 422),
            ("POST", "/v1/text-to-voice", {"json": {"voice_name": "x", "voice_description": "y",
                                                    "generated_voice_id": "forged"}}, 400),
            ("POST", "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM", {"json": {
                "text": "x", "pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": "a"},
                                                                   {"pronunciation_dictionary_id": "b"}]}}, 422),
        ]
        for method, path, kw, status in cases:
            async with s.request(method, base + path, **kw) as r:
                body = await r.json()
                assert r.status == status, (path, body)
                assert set(body["detail"]) >= {"status", "message"}, body
        xml = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><lexicon>&e;</lexicon>'
        async with s.post(base + "/v1/pronunciation-dictionaries/add-from-file", data=form(name="x", file=xml)) as r:
            assert r.status == 422 and "passwd" not in await r.text()
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/voices/add", data=form(name="N")) as r:
        assert r.status == 401


async def test_cartesia_bad_input(gateway: Gateway) -> None:
    async with aiohttp.ClientSession(headers=H_CA) as s:
        async with s.post(gateway.http + "/voices/clone", data=form(name="N", language="en")) as r:
            assert r.status == 400 and (await r.json())["error_code"] == "invalid_request"
        async with s.patch(gateway.http + "/voices/not-a-voice", json={"name": "x"}) as r:
            assert r.status == 404
        async with s.delete(gateway.http + "/pronunciation-dicts/nope") as r:
            assert r.status == 404
        async with s.post(gateway.http + "/pronunciation-dicts/", json={"name": "x", "items": [{"text": "a"}]}) as r:
            assert r.status == 400


@pytest.mark.parametrize(("settings", "what"), [({"voice_limit": 0}, "clone"), ({"allocated_credits": 0}, "design")])
async def test_gradium_quota_errors(tls_files: dict[str, Path], settings: dict[str, int], what: str) -> None:
    app = create_emulator_app(EmulatorSettings(**settings))  # type: ignore[arg-type]
    async with run_app(app) as (port, _):
        emulator = Emulator(app, f"http://127.0.0.1:{port}/api")
        async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw, \
                aiohttp.ClientSession() as s:
            if what == "clone":
                async with s.post(gw.http + "/v1/voices/add", headers=H_EL,
                                  data=form(name="N", files=wav_bytes("x", 24000))) as r:
                    assert r.status == 401 and (await r.json())["detail"]["status"] == "quota_exceeded"
                async with s.post(gw.http + "/voices/clone", headers=H_CA,
                                  data=form(name="N", language="en", clip=wav_bytes("x", 24000))) as r:
                    assert r.status == 402 and (await r.json())["error_code"] == "quota_exceeded"
            else:
                async with s.post(gw.http + "/v1/text-to-voice/design", headers=H_EL,
                                  json={"voice_description": "a voice"}) as r:
                    assert r.status == 401 and (await r.json())["detail"]["status"] == "quota_exceeded"
