"""The LiveKit Cartesia plugin (1.8.9) through the gateway, driven standalone (no media server): its TTS
and STT objects are built with the gateway as `base_url` and fed text and audio frames directly."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
import pytest

from gateway.emulator.stats import STATS
from tests.audiocheck import expected_words, speech, words
from tests.conftest import Gateway
from tests.voiceagents import lk_events, lk_push_paced

lk_rtc = pytest.importorskip("livekit.rtc")
lk_stt = pytest.importorskip("livekit.agents.stt")
lk_cartesia = pytest.importorskip("livekit.plugins.cartesia")

KEY = "gsk_test"
TEXT = "hello world. how are you today?"
RATE = 16000


def last_setup(gw: Gateway) -> dict[str, Any]:
    return gw.emulator.app[STATS].setups[-1]["setup"]


async def test_tts_bytes_and_websocket(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        tts = lk_cartesia.TTS(api_key=KEY, base_url=gateway.http, http_session=session, sample_rate=24000,
                              speed=1.2, emotion="Happy")
        # synthesize(): POST /tts/bytes with X-API-Key and Cartesia-Version 2025-04-16, raw PCM back
        audio = b"".join([ev.frame.data.tobytes() async for ev in tts.synthesize("Chunked speech works.")])
        assert words(np.frombuffer(audio, "<i2"), 24000) == expected_words("Chunked speech works.")
        assert last_setup(gateway)["json_config"]["padding_bonus"] == -2.0  # generation_config.speed
        # stream(): the pooled /tts/websocket, one context per stream, sentences with max_buffer_delay_ms 0,
        # word timestamps; a second stream reuses the socket
        for texts in (["Streamed speech, ", "word by word. ", "Then a second sentence."], ["Once ", "more."]):
            stream = tts.stream()
            for t in texts:
                stream.push_text(t)
            stream.end_input()
            pcm = b""
            async for ev in stream:
                pcm += ev.frame.data.tobytes()
            assert words(np.frombuffer(pcm, "<i2"), 24000) == expected_words("".join(texts))
            await stream.aclose()
        await tts.aclose()


async def test_stt_ink_whisper_stream(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        stt = lk_cartesia.STT(api_key=KEY, base_url=gateway.http, http_session=session, model="ink-whisper",
                              language="en", sample_rate=RATE)
        stream = stt.stream()
        feeder = asyncio.create_task(lk_push_paced(stream, speech(TEXT, RATE) + bytes(RATE * 2)))
        events = await lk_events(stream, feeder)
        T = lk_stt.SpeechEventType
        finals = [ev.alternatives[0].text for ev in events if ev.type == T.FINAL_TRANSCRIPT]
        assert " ".join(finals) == "Hello world. How are you today?"
        assert T.INTERIM_TRANSCRIPT in [ev.type for ev in events]
        await stt.aclose()


async def test_stt_ink2_turns(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        stt = lk_cartesia.STT(api_key=KEY, base_url=gateway.http, http_session=session, language="en",
                              sample_rate=RATE, turn_end_timeout_ms=2000)  # English: ink-2, /stt/turns/websocket
        stream = stt.stream()
        feeder = asyncio.create_task(lk_push_paced(stream, speech(TEXT, RATE) + bytes(RATE * 2 * 2)))
        events = await lk_events(stream, feeder)
        T = lk_stt.SpeechEventType
        kinds = [ev.type for ev in events]
        finals = [ev.alternatives[0].text for ev in events if ev.type == T.FINAL_TRANSCRIPT]
        assert finals == ["Hello world.", "How are you today?"]
        assert kinds.count(T.START_OF_SPEECH) == 2 and kinds.count(T.END_OF_SPEECH) == 2
        assert T.PREFLIGHT_TRANSCRIPT in kinds  # turn.eager_end
        await stt.aclose()
