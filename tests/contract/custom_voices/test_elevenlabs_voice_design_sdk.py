"""The official `elevenlabs` SDK designs a voice through the gateway (base URL changed only): previews
from a description over Gradium's voice generator, one kept as a voice, then spoken with."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from gateway.emulator import EmulatorSettings, tone_decoder, tones
from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, words
from tests.conftest import Emulator, Gateway, gateway_settings, run_app, start_gateway

KEY = "gsk_test"


def client(gw: Gateway) -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=KEY, base_url=gw.http)


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_design_keep_and_speak(gateway: Gateway) -> None:
    el = client(gateway)
    design = await el.text_to_voice.design(voice_description="A calm, deep narrator with a slow pace.",
                                           text="Welcome to the gateway.", output_format="pcm_24000")
    assert len(design.previews) == 3 and design.text == "Welcome to the gateway."
    ids = {p.generated_voice_id for p in design.previews}
    assert len(ids) == 3 and not any(i.startswith("vox_emb_") for i in ids)  # Gradium's draft ids stay hidden
    first = design.previews[0]
    pcm = decode(base64.b64decode(first.audio_base_64), "s16le", 24000).pcm
    assert words(pcm, 24000) == expected_words("Welcome to the gateway.")
    assert first.media_type == "audio/pcm" and first.duration_secs > 0.5
    mp3 = await el.text_to_voice.design(voice_description="A bright voice")  # default mp3_44100_192
    assert decode(base64.b64decode(mp3.previews[0].audio_base_64)).codec in ("mp3", "mp3float")

    voice = await el.text_to_voice.create(voice_name="Narrator", voice_description="calm narrator",
                                          generated_voice_id=first.generated_voice_id, labels={"mood": "calm"})
    assert voice.category == "generated" and voice.name == "Narrator" and len(voice.voice_id) == 20
    listed = {v.voice_id: v for v in (await el.voices.get_all()).voices}
    assert listed[voice.voice_id].category == "generated" and listed[voice.voice_id].labels == {"mood": "calm"}

    audio = await collect(el.text_to_speech.convert(voice.voice_id, text="Designed voice.",
                                                    output_format="pcm_24000"))
    d = decode(audio, "s16le", 24000)
    assert words(d.pcm, 24000) == expected_words("Designed voice.")
    assert tone_decoder.tone_length_s(d.pcm, 24000) > tones.TONE_S + 0.003
    assert not gateway.emulator.app[STATS].setups[-1]["setup"]["voice_id"].startswith("vox_emb_")

    with pytest.raises(ApiError) as e:  # the same name again
        await el.text_to_voice.create(voice_name="narrator", voice_description="x",
                                      generated_voice_id=design.previews[1].generated_voice_id)
    assert e.value.status_code == 400 and e.value.body["detail"]["status"] == "already_exists"
    with pytest.raises(ApiError) as e:
        await el.text_to_voice.create(voice_name="Other", voice_description="x", generated_voice_id="nope")
    assert e.value.status_code == 400 and e.value.body["detail"]["status"] == "voice_not_found"


async def test_design_waits_for_drafts_to_be_ready(tls_files: Any) -> None:
    from gateway.emulator import create_emulator_app

    app = create_emulator_app(EmulatorSettings(draft_ready_after_s=0.6))  # Gradium computes drafts async
    async with run_app(app) as (port, _):
        emulator = Emulator(app, f"http://127.0.0.1:{port}/api")
        async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw:
            design = await client(gw).text_to_voice.design(voice_description="slow to make", text="Ready now.",
                                                           output_format="pcm_24000")
    pcm = decode(base64.b64decode(design.previews[0].audio_base_64), "s16le", 24000).pcm
    assert words(pcm, 24000) == expected_words("Ready now.")


async def test_design_out_of_credits(tls_files: Any) -> None:
    from gateway.emulator import create_emulator_app

    app = create_emulator_app(EmulatorSettings(allocated_credits=0))
    async with run_app(app) as (port, _):
        emulator = Emulator(app, f"http://127.0.0.1:{port}/api")
        async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw:
            with pytest.raises(ApiError) as e:
                await client(gw).text_to_voice.design(voice_description="anything at all")
    assert e.value.status_code == 401 and e.value.body["detail"]["status"] == "quota_exceeded"
