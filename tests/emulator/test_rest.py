"""REST endpoints: speech (raw and NDJSON), errors in the documented shapes, voices, tokens."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.emulator import tone_decoder, tones

from .conftest import API_KEY, Emulator
from .helpers import expected, wav_bytes

EMMA = "YTpq7expH9539ERJ"
KEY = {"x-api-key": API_KEY}


def ndjson(body: bytes) -> list[dict]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


async def test_tts_only_audio_pcm(emulator: Emulator) -> None:
    body = {"text": "Raw bytes please", "voice_id": EMMA, "output_format": "pcm", "only_audio": True}
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=body, headers=KEY) as resp:
        assert resp.status == 200
        assert resp.content_type == "audio/pcm"
        data = await resp.read()
    assert tone_decoder.transcribe(np.frombuffer(data, np.int16), 48000) == "raw bytes please"


async def test_tts_ndjson(emulator: Emulator) -> None:
    body = {"text": "lines of json", "voice_id": EMMA, "output_format": "pcm_24000", "json_config": {"temp": 0.5}}
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=body, headers=KEY) as resp:
        assert resp.status == 200
        msgs = ndjson(await resp.read())
    assert msgs[0]["type"] == "ready" and msgs[0]["sample_rate"] == 24000
    assert msgs[-1] == {"type": "end_of_stream"}
    assert [m["text"] for m in msgs if m["type"] == "text"] == ["lines", "of", "json"]
    import base64

    pcm = np.frombuffer(b"".join(base64.b64decode(m["audio"]) for m in msgs if m["type"] == "audio"), np.int16)
    assert tone_decoder.transcribe(pcm, 24000) == "lines of json"


@pytest.mark.parametrize(
    ("body", "headers", "text"),
    [
        (
            {"text": "x", "voice_id": EMMA},
            {"x-api-key": "revoked_1"},
            "error from server 1008: API key is revoked or expired",
        ),
        ({"text": "x", "voice_id": EMMA}, {}, "error from server 1008: API key is revoked or expired"),
        ({"text": "x", "voice_id": "missing"}, KEY, "error from server 1011: Embeddings not found for missing"),
        ({"voice_id": EMMA}, KEY, "error from server 1003: text is required"),
    ],
)
async def test_tts_errors_are_plain_500(emulator: Emulator, body: dict, headers: dict, text: str) -> None:
    async with emulator.http.post(f"{emulator.api}post/speech/tts", json=body, headers=headers) as resp:
        assert resp.status == 500
        assert resp.content_type == "text/plain"
        assert await resp.text() == text


async def test_asr_wav_default_content_type(emulator: Emulator) -> None:
    text = "Transcribe this file, please."
    url = f"{emulator.api}post/speech/asr"
    # No Content-Type at all means wav; aiohttp would add application/octet-stream by itself.
    async with emulator.http.post(url, data=wav_bytes(text), headers=KEY, skip_auto_headers=["Content-Type"]) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        msgs = ndjson(await resp.read())
    assert msgs[0]["type"] == "ready" and msgs[-1]["type"] == "end_of_stream"
    assert " ".join(m["text"] for m in msgs if m["type"] == "text") == expected(text)
    assert sum(m["type"] == "end_text" for m in msgs) == len(tones.normalize_words(text))
    assert not any(m["type"] == "step" for m in msgs)
    async with emulator.http.post(url, data=wav_bytes("explicit"), headers=KEY | {"Content-Type": "audio/wav"}) as resp:
        assert [m["text"] for m in ndjson(await resp.read()) if m["type"] == "text"] == ["explicit"]
    async with emulator.http.post(url, data=wav_bytes("octet"), headers=KEY) as resp:
        assert resp.status == 500
        assert await resp.text() == "unsupported content type for SST 'application/octet-stream'"


async def test_asr_pcm_by_content_type(emulator: Emulator) -> None:
    pcm, _ = tones.synthesize("raw pcm body", 24000)
    headers = KEY | {"Content-Type": "audio/pcm"}
    async with emulator.http.post(f"{emulator.api}post/speech/asr", data=pcm.tobytes(), headers=headers) as resp:
        msgs = ndjson(await resp.read())
    assert [m["text"] for m in msgs if m["type"] == "text"] == ["raw", "pcm", "body"]


async def test_asr_unsupported_content_type(emulator: Emulator) -> None:
    headers = KEY | {"Content-Type": "audio/x-wav"}
    async with emulator.http.post(f"{emulator.api}post/speech/asr", data=b"RIFF", headers=headers) as resp:
        assert resp.status == 500
        assert await resp.text() == "unsupported content type for SST 'audio/x-wav'"


async def test_asr_bad_json_config_gives_empty_200(emulator: Emulator) -> None:
    params = {"input_format": "pcm", "json_config": '{"keywords": ["a", "b"]}'}
    url = f"{emulator.api}post/speech/asr"
    async with emulator.http.post(url, params=params, data=b"\x00" * 3840, headers=KEY) as resp:
        assert resp.status == 200
        assert await resp.read() == b""


async def test_voice_get_unknown_is_404_detail(emulator: Emulator) -> None:
    async with emulator.http.get(f"{emulator.api}voices/nope", headers=KEY) as resp:
        assert resp.status == 404
        assert await resp.json() == {"detail": "Voice not found"}


async def test_crud_auth_is_401_detail(emulator: Emulator) -> None:
    async with emulator.http.get(f"{emulator.api}usages/credits", headers={"x-api-key": "revoked"}) as resp:
        assert resp.status == 401
        assert await resp.json() == {"detail": "API key is revoked or expired"}


async def test_delete_catalog_voice_is_not_found_and_204_has_json_type(emulator: Emulator) -> None:
    async with emulator.http.delete(f"{emulator.api}voices/{EMMA}", headers=KEY) as resp:
        assert resp.status == 404
    async with emulator.http.delete(f"{emulator.api}voices/emuClone00000001", headers=KEY) as resp:
        assert resp.status == 204
        assert resp.headers["Content-Type"] == "application/json"


async def test_credits_go_down_with_use(emulator: Emulator) -> None:
    client = emulator.sdk()
    before = (await client.credits())["remaining_credits"]
    await client.tts({"voice_id": EMMA, "output_format": "pcm"}, "twelve chars")
    after = (await client.credits())["remaining_credits"]
    assert before - after == len("twelve chars")


async def test_healthz(emulator: Emulator) -> None:
    async with emulator.http.get(f"{emulator.base}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
