"""Custom voices, the voice generator and pronunciation dictionaries: per org, heard in the audio."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from gradium import GradiumClient

from gateway.emulator import EmulatorSettings, tone_decoder, tones

from .conftest import API_KEY, Emulator, StartEmulator
from .helpers import drain, wav_bytes

EMMA = "YTpq7expH9539ERJ"
KEY = {"x-api-key": API_KEY}


async def _tts_ws(emulator: Emulator, text: str, **setup: object) -> tuple[np.ndarray, list[dict]]:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "output_format": "pcm", **setup})
        await ws.send_json({"type": "text", "text": text})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    pcm = b"".join(base64.b64decode(m["audio"]) for m in msgs if m["type"] == "audio")
    return np.frombuffer(pcm, np.int16), msgs


async def test_clone_is_heard_and_private(emulator: Emulator, tmp_path) -> None:
    sample = tmp_path / "brand.wav"
    sample.write_bytes(wav_bytes("sample voice"))
    sdk = emulator.sdk()
    created = await sdk.voice_create(str(sample), name="Brand", language="en")
    uid = created["uid"]
    assert created["was_updated"] is False
    again = await sdk.voice_create(str(sample), name="Brand", language="en")
    assert again == {"uid": uid, "error": None, "was_updated": True}  # same name: replaced, not duplicated

    stock, _ = await _tts_ws(emulator, "hello there", voice_id=EMMA)
    clone, _ = await _tts_ws(emulator, "hello there", voice_id=uid)
    assert tone_decoder.transcribe(clone, 48000) == tone_decoder.transcribe(stock, 48000) == "hello there"
    assert tone_decoder.tone_length_s(stock, 48000) == pytest.approx(tones.TONE_S, abs=0.004)
    # another voice spoke
    assert tone_decoder.tone_length_s(clone, 48000) > tone_decoder.tone_length_s(stock, 48000) + 0.004

    other = GradiumClient(base_url=emulator.api, api_key="gsk_other_org")
    assert uid not in [v["uid"] for v in await other.voice_get()]
    async with emulator.http.get(f"{emulator.api}voices/{uid}", headers={"x-api-key": "gsk_other_org"}) as resp:
        assert resp.status == 404
    async with emulator.http.delete(f"{emulator.api}voices/{uid}", headers={"x-api-key": "gsk_other_org"}) as resp:
        assert resp.status == 404
    await sdk.voice_delete(uid)
    assert uid not in [v["uid"] for v in await sdk.voice_get()]


async def test_clone_rejects_bad_uploads(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(EmulatorSettings(voice_limit=1, custom_voices=()))
    url = f"{emulator.api}voices/"

    async def post(audio: bytes | None, name: str | None = "V") -> tuple[int, object]:
        import aiohttp

        form = aiohttp.FormData()
        if audio is not None:
            form.add_field("audio_file", audio, filename="a.wav", content_type="audio/wav")
        if name is not None:
            form.add_field("name", name)
        async with emulator.http.post(url, data=form, headers=KEY) as resp:
            return resp.status, await resp.json()

    assert (await post(None))[0] == 422
    assert (await post(wav_bytes("x"), None))[0] == 422
    assert await post(b"") == (400, {"detail": "The audio file is empty"})
    assert await post(b"this is not audio at all" * 10) == (400, {"detail": "Could not decode the audio file"})
    assert (await post(wav_bytes("one")))[0] == 201
    assert (await post(wav_bytes("two"), "W"))[0] == 409  # the org's voice slots are used up


async def test_voice_generator_to_voice(emulator: Emulator) -> None:
    sdk = emulator.sdk()
    out = await sdk.post("voice-generator/generate", json={"prompt": "a calm narrator", "language": "en",
                                                           "n_samples": 2})
    drafts = [e["embedding_id"] for e in out["embeddings"]]
    assert len(drafts) == 2 and all(d.startswith("vox_emb_") for d in drafts)
    got = await sdk.get("voice-generator/embeddings", params={"embedding_id": drafts[0]})
    assert got["embeddings"][0]["prompt"] == "a calm narrator"
    pcm, _ = await _tts_ws(emulator, "preview text", voice_id=drafts[0])
    assert tone_decoder.transcribe(pcm, 48000) == "preview text"
    voice = await sdk.post("voices/from-embedding", json={"voxium_embedding_id": drafts[0], "name": "Narrator"})
    assert voice["name"] == "Narrator" and voice["is_catalog"] is False
    async with emulator.http.post(f"{emulator.api}voices/from-embedding", headers=KEY,
                                  json={"voxium_embedding_id": drafts[1], "name": "Narrator"}) as resp:
        assert resp.status == 409  # duplicate name


async def test_generator_out_of_credits(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(EmulatorSettings(allocated_credits=0))
    async with emulator.http.post(f"{emulator.api}voice-generator/generate", headers=KEY,
                                  json={"prompt": "x", "language": "en", "n_samples": 1}) as resp:
        assert resp.status == 402


async def test_pronunciation_rewrites_ws_speech(emulator: Emulator) -> None:
    rules = [{"original": "Gradium", "rewrite": "grey dee um"}, {"original": "TTS", "rewrite": "tee tee ess",
                                                                 "case_sensitive": True}]
    async with emulator.http.post(f"{emulator.api}pronunciations/", headers=KEY,
                                  json={"name": "brand", "language": "en", "rules": rules}) as resp:
        assert resp.status == 201
        d = await resp.json()
    pcm, _ = await _tts_ws(emulator, "Gradium does TTS not tts", voice_id=EMMA, pronunciation_id=d["uid"])
    assert tone_decoder.transcribe(pcm, 48000) == "grey dee um does tee tee ess not tts"

    async with emulator.http.put(f"{emulator.api}pronunciations/{d['uid']}", headers=KEY,
                                 json={"rules": [{"original": "Gradium", "rewrite": "gradeum"}]}) as resp:
        assert (await resp.json())["rules"][0]["rewrite"] == "gradeum"
    async with emulator.http.get(f"{emulator.api}pronunciations/", headers=KEY) as resp:
        assert (await resp.json())["total"] == 1
    async with emulator.http.get(f"{emulator.api}pronunciations/", headers={"x-api-key": "gsk_other"}) as resp:
        assert (await resp.json()) == {"dictionaries": [], "total": 0}
    async with emulator.http.delete(f"{emulator.api}pronunciations/{d['uid']}", headers=KEY) as resp:
        assert resp.status == 204
    _, msgs = await _tts_ws(emulator, "x", voice_id=EMMA, pronunciation_id=d["uid"])
    assert msgs[-1]["type"] == "error" and msgs[-1]["message"] == f"Pronunciation dictionary {d['uid']} not found."


async def test_gradium_sdk_voice_designer_flow(emulator: Emulator) -> None:
    """The official `gradium` SDK's designer calls: generate (waiting for ready), get, speak, keep."""
    sdk = emulator.sdk()
    out = await sdk.voice_generate("a bright young voice", language="en", n_samples=2, wait=True)
    draft = out["embeddings"][0]["embedding_id"]
    assert (await sdk.voice_embedding_get(draft))["ready"] is True
    result = await sdk.voice_tts(draft, "draft speaking", output_format="pcm")
    assert tone_decoder.transcribe(np.frombuffer(result.raw_data, np.int16), 48000) == "draft speaking"
    voice = await sdk.voice_from_embedding(draft, name="Bright")
    assert voice["uid"] in [v["uid"] for v in await sdk.voice_get()]
