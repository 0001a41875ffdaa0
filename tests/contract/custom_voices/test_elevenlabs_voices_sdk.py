"""The official `elevenlabs` SDK manages its own voices through the gateway (base URL changed only):
instant voice cloning, edit, delete, the clone in every catalogue route and in TTS (REST and WebSocket),
with the clone's own tones heard in the audio."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from elevenlabs.client import AsyncElevenLabs, ElevenLabs
from elevenlabs.core.api_error import ApiError

from gateway.emulator import tone_decoder, tones
from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, wav_bytes, words
from tests.conftest import Gateway

KEY = "gsk_test"
TEXT = "Our brand voice speaks."


def client(gw: Gateway, key: str = KEY) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=key, base_url=gw.http)


def sample(name: str = "sample.wav", text: str = "a voice sample") -> tuple[str, io.BytesIO, str]:
    return (name, io.BytesIO(wav_bytes(text, 24000)), "audio/wav")


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_clone_edit_use_delete(gateway: Gateway, trust_test_ca: Any) -> None:
    el = client(gateway)
    created = await el.voices.ivc.create(
        name="Brand", files=[sample("short.wav", "hi"), sample("long.wav", "a much longer voice sample")],
        description="our brand", labels={"accent": "british", "use_case": "ads"})
    vid = created.voice_id
    assert len(vid) == 20 and not created.requires_verification
    setup = gateway.emulator.app[STATS]
    uid = next(v["uid"] for v in await gradium_voices(gateway) if v["name"] == "Brand")
    assert uid != vid  # the Gradium uid is never shown

    listed = {v.voice_id: v for v in (await el.voices.get_all()).voices}
    assert listed[vid].name == "Brand" and listed[vid].category == "cloned"
    assert listed[vid].labels == {"accent": "british", "use_case": "ads"}
    found = await el.voices.search(search="brand")
    assert [v.voice_id for v in found.voices] == [vid]
    personal = await el.voices.search(voice_type="personal", page_size=100)
    assert vid in [v.voice_id for v in personal.voices] and {v.category for v in personal.voices} == {"cloned"}
    assert vid not in [v.voice_id for v in (await el.voices.search(voice_type="default", page_size=100)).voices]
    assert (await el.voices.search(category="generated")).voices == []
    assert (await el.voices.search(voice_type="community")).voices == []
    got = await el.voices.get(vid)
    assert got.name == "Brand" and got.description == "our brand" and got.category == "cloned"

    await el.voices.update(vid, name="Brand Two", description="renamed", labels={"accent": "irish"},
                           files=[sample("new.wav", "a new sample")])  # replaces the clip in place
    got = await el.voices.get(vid)
    assert got.name == "Brand Two" and got.description == "renamed" and got.labels["accent"] == "irish"
    assert next(v["filename"] for v in await gradium_voices(gateway) if v["uid"] == uid) == "new.wav"

    # TTS with the clone: Gradium is asked for the clone's uid and the clone's tones are heard
    audio = await collect(el.text_to_speech.convert(vid, text=TEXT, output_format="pcm_24000"))
    assert setup.setups[-1]["setup"]["voice_id"] == uid
    d = decode(audio, "s16le", 24000)
    assert words(d.pcm, 24000) == expected_words(TEXT)
    assert tone_decoder.tone_length_s(d.pcm, 24000) > tones.TONE_S + 0.003
    stock = decode(await collect(el.text_to_speech.convert("21m00Tcm4TlvDq8ikWAM", text=TEXT,
                                                           output_format="pcm_24000")), "s16le", 24000)
    assert tone_decoder.tone_length_s(stock.pcm, 24000) < tones.TONE_S + 0.003

    def realtime() -> bytes:
        sync = ElevenLabs(api_key=KEY, base_url=gateway.https)  # the SDK forces wss:// here
        return b"".join(sync.text_to_speech.convert_realtime(voice_id=vid, text=iter(["Our brand ", "voice speaks."]),
                                                             output_format="pcm_24000"))

    pcm = decode(await asyncio.to_thread(realtime), "s16le", 24000).pcm
    assert words(pcm, 24000) == expected_words(TEXT) and setup.setups[-1]["setup"]["voice_id"] == uid

    deleted = await el.voices.delete(vid)
    assert deleted.status == "ok"
    assert vid not in [v.voice_id for v in (await el.voices.get_all()).voices]
    with pytest.raises(ApiError) as e:
        await el.voices.get(vid)
    assert e.value.status_code == 400 and e.value.body["detail"]["status"] == "voice_not_found"
    with pytest.raises(ApiError) as e:
        await collect(el.text_to_speech.convert(vid, text=TEXT))
    assert e.value.status_code == 400


async def gradium_voices(gw: Gateway) -> list[dict[str, Any]]:
    from gateway.emulator.state import STATE

    return [v.to_api() for v in gw.emulator.app[STATE].voices.list("", False)] + [
        v.to_api() for v in gw.emulator.app[STATE].voices._custom.values()]


async def test_clone_errors(gateway: Gateway) -> None:
    el = client(gateway)

    async def status(**kw: Any) -> tuple[int, str]:
        with pytest.raises(ApiError) as e:
            await el.voices.ivc.create(**{"name": "X", "files": [sample()], **kw})
        return e.value.status_code, e.value.body["detail"]["status"]

    assert await status(files=[]) == (422, "invalid_parameters")  # no file
    assert await status(files=[("empty.wav", io.BytesIO(b""), "audio/wav")]) == (400, "invalid_audio")
    assert await status(files=[("notes.txt", io.BytesIO(b"not audio " * 100), "text/plain")]) == (400, "invalid_audio")
    big = ("big.wav", io.BytesIO(b"RIFF" + b"\0" * (11 * 1024 * 1024)), "audio/wav")
    assert await status(files=[big]) == (413, "payload_too_large")
    await el.voices.ivc.create(name="Taken", files=[sample()])
    assert await status(name="taken") == (400, "already_exists")
    for bad in ("nope", "A" * 20):
        with pytest.raises(ApiError) as e:
            await el.voices.update(bad, name="x")
        assert e.value.status_code == 400
        with pytest.raises(ApiError) as e:
            await el.voices.delete(bad)
        assert e.value.status_code == 400
