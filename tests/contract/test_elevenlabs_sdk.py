"""The official `elevenlabs` SDK against the gateway, changing only its base URL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from elevenlabs import VoiceSettings
from elevenlabs.client import AsyncElevenLabs, ElevenLabs
from elevenlabs.core.api_error import ApiError

from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, words
from tests.conftest import Gateway

TEXT = "Hello world. This gateway speaks."
RACHEL = "21m00Tcm4TlvDq8ikWAM"  # ElevenLabs premade voice, mapped to Gradium's Emma
EMMA = "YTpq7expH9539ERJ"


def client(gw: Gateway, key: str | None = "gsk_test") -> AsyncElevenLabs:
    return AsyncElevenLabs(api_key=key, base_url=gw.http)


async def collect(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


def last_setup(gw: Gateway) -> dict[str, Any]:
    return gw.emulator.app[STATS].setups[-1]["setup"]


async def test_convert_default_is_mp3_44100_and_words_survive(gateway: Gateway) -> None:
    audio = await collect(client(gateway).text_to_speech.convert(RACHEL, text=TEXT))
    d = decode(audio)
    assert d.codec in ("mp3", "mp3float") and d.sample_rate == 44100 and d.channels == 1
    assert words(d.pcm, d.sample_rate) == expected_words(TEXT)
    setup = last_setup(gateway)
    assert setup["voice_id"] == EMMA and setup["output_format"] == "pcm_44100"


@pytest.mark.parametrize(
    ("output_format", "raw", "rate", "gradium_format"),
    [("pcm_16000", "s16le", 16000, "pcm_16000"), ("ulaw_8000", "mulaw", 8000, "ulaw_8000")],
)
async def test_convert_raw_formats(gateway: Gateway, output_format: str, raw: str, rate: int,
                                   gradium_format: str) -> None:
    audio = await collect(client(gateway).text_to_speech.convert(
        RACHEL, text=TEXT, output_format=output_format, model_id="eleven_flash_v2_5"))
    d = decode(audio, raw, rate)
    assert words(d.pcm, rate) == expected_words(TEXT)
    # matching formats are passed through: Gradium was asked for exactly this format
    assert last_setup(gateway)["output_format"] == gradium_format


async def test_stream_with_voice_settings(gateway: Gateway) -> None:
    el = client(gateway)
    audio = await collect(el.text_to_speech.stream(
        EMMA, text=TEXT, output_format="mp3_22050_32",
        voice_settings=VoiceSettings(stability=0.5, similarity_boost=0.75, speed=1.2)))
    d = decode(audio)
    assert d.sample_rate == 22050
    assert words(d.pcm, d.sample_rate) == expected_words(TEXT)
    setup = last_setup(gateway)
    assert setup["voice_id"] == EMMA  # Gradium ids pass through
    cfg = setup["json_config"]
    assert cfg["padding_bonus"] == -2.0 and cfg["temp"] == 0.7 and cfg["cfg_coef"] == 2.0


async def test_raw_response_headers(gateway: Gateway) -> None:
    el = client(gateway)
    async with el.text_to_speech.with_raw_response.stream(RACHEL, text=TEXT) as r:
        body = b"".join([c async for c in r.data])
        assert r.headers["content-type"].startswith("audio/mpeg")
        assert r.headers["character-cost"] == str(len(TEXT))
        assert r.headers["request-id"] and r.headers["x-trace-id"] == r.headers["request-id"]
    assert body


async def test_convert_with_timestamps(gateway: Gateway) -> None:
    r = await client(gateway).text_to_speech.convert_with_timestamps(RACHEL, text="Hi there", output_format="pcm_24000")
    assert r.alignment is not None
    assert "".join(r.alignment.characters) == "Hi there"  # the characters of the input text
    starts = r.alignment.character_start_times_seconds
    assert starts == sorted(starts) and r.alignment.character_end_times_seconds[-1] > starts[0]


async def test_errors_are_elevenlabs_shaped(gateway: Gateway) -> None:
    with pytest.raises(ApiError) as e:
        await collect(client(gateway, key=None).text_to_speech.convert(RACHEL, text=TEXT))
    assert e.value.status_code == 401
    with pytest.raises(ApiError) as e:
        await collect(client(gateway).text_to_speech.convert("not-a-real-voice-id", text=TEXT))
    assert e.value.status_code == 400
    with pytest.raises(ApiError) as e:
        await collect(client(gateway).text_to_speech.convert(RACHEL, text=TEXT, output_format="mp3_1_2"))  # type: ignore[arg-type]
    assert e.value.status_code == 422


def _convert_realtime(gw: Gateway, text: list[str]) -> bytes:
    el = ElevenLabs(api_key="gsk_test", base_url=gw.https)  # the SDK forces wss:// for this call
    return b"".join(el.text_to_speech.convert_realtime(
        voice_id=RACHEL, text=iter(text), model_id="eleven_flash_v2_5",
        voice_settings=VoiceSettings(stability=0.5, similarity_boost=0.8)))


async def test_convert_realtime_over_wss(gateway: Gateway, trust_test_ca: Any) -> None:
    # LLM-style token stream that splits words across chunks
    chunks = ["Hel", "lo wor", "ld. This gate", "way speaks."]
    audio = await asyncio.to_thread(_convert_realtime, gateway, chunks)
    d = decode(audio)
    assert d.codec in ("mp3", "mp3float") and d.sample_rate == 44100
    assert words(d.pcm, d.sample_rate) == expected_words(TEXT)
