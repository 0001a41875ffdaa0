"""LiveKit's ElevenLabs plugin (livekit-plugins-elevenlabs 1.8) against the gateway, driven standalone (no
media server): TTS over HTTP and over the multi-context socket (and text-to-dialogue for eleven_v3), STT
over HTTP and the realtime socket. Only `base_url` changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, APIError
from livekit.plugins import elevenlabs

from gateway.emulator.stats import STATS
from tests.audiocheck import expected_words, speech, words
from tests.conftest import Gateway
from tests.voiceagents import lk_frames

KEY = "gsk_test"
RACHEL, EMMA = "21m00Tcm4TlvDq8ikWAM", "YTpq7expH9539ERJ"
NO_RETRY = APIConnectOptions(max_retry=0, timeout=10)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def lk_tts(gw: Gateway, http: aiohttp.ClientSession, **kw: Any) -> elevenlabs.TTS:
    return elevenlabs.TTS(api_key=KEY, base_url=f"{gw.http}/v1", http_session=http, voice_id=RACHEL, **kw)


def pcm_of(frames: list[rtc.AudioFrame]) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, np.int16) for f in frames])


async def test_tts_http_chunked_stream(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tts = lk_tts(gateway, http, encoding="pcm_24000")
    frames = [ev.frame async for ev in tts.synthesize("Hello from LiveKit.", conn_options=NO_RETRY)]
    assert words(pcm_of(frames), 24000) == expected_words("Hello from LiveKit.")
    # the default mp3_22050_32 goes through LiveKit's mp3 decoder
    frames = [ev.frame async for ev in lk_tts(gateway, http).synthesize("Default format.", conn_options=NO_RETRY)]
    assert frames[0].sample_rate == 22050 and words(pcm_of(frames), 22050) == expected_words("Default format.")
    await tts.aclose()


async def test_tts_multi_context_socket_streams_and_reuses_the_connection(gateway: Gateway,
                                                                        http: aiohttp.ClientSession) -> None:
    tts = lk_tts(gateway, http, encoding="pcm_16000", voice_settings=elevenlabs.VoiceSettings(
        stability=0.5, similarity_boost=0.75, speed=1.1))
    for text in ("First sentence here. And a second one.", "Another turn on the same socket."):
        stream = tts.stream(conn_options=NO_RETRY)
        for token in text.replace(" ", " \x00").split("\x00"):  # LLM-style tokens
            stream.push_text(token)
        stream.end_input()
        frames = [ev.frame async for ev in stream]
        await stream.aclose()
        assert words(pcm_of(frames), 16000) == expected_words(text)
    setups = [s for s in gateway.emulator.app[STATS].setups if s["route"] == "speech/tts"][-2:]
    assert all(s["setup"]["voice_id"] == EMMA and s["setup"]["close_ws_on_eos"] is False for s in setups)
    assert setups[0]["setup"]["json_config"]["padding_bonus"] == -1.0
    await tts.aclose()


async def test_tts_concurrent_streams_share_one_socket(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tts = lk_tts(gateway, http, encoding="pcm_24000")
    texts = ["One two three.", "Four five six.", "Seven eight nine."]

    async def run(text: str) -> list[str]:
        stream = tts.stream(conn_options=NO_RETRY)
        stream.push_text(text)
        stream.end_input()
        frames = [ev.frame async for ev in stream]
        await stream.aclose()
        return words(pcm_of(frames), 24000)

    got = await asyncio.gather(*(run(t) for t in texts))
    assert got == [expected_words(t) for t in texts]
    await tts.aclose()


async def test_tts_dialogue_model_over_http_and_socket(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tts = lk_tts(gateway, http, encoding="pcm_24000", model="eleven_v3")
    frames = [ev.frame async for ev in tts.synthesize("Dialogue over HTTP.", conn_options=NO_RETRY)]
    assert words(pcm_of(frames), 24000) == expected_words("Dialogue over HTTP.")
    stream = tts.stream(conn_options=NO_RETRY)
    stream.push_text("Dialogue over the socket.")
    stream.end_input()
    frames = [ev.frame async for ev in stream]
    await stream.aclose()
    assert words(pcm_of(frames), 24000) == expected_words("Dialogue over the socket.")
    await tts.aclose()


async def test_tts_errors_reach_the_plugin(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tts = elevenlabs.TTS(api_key=KEY, base_url=f"{gateway.http}/v1", http_session=http, voice_id="no-such-voice",
                         encoding="pcm_16000")
    with pytest.raises(APIError):
        [ev async for ev in tts.synthesize("Hi.", conn_options=NO_RETRY)]
    stream = tts.stream(conn_options=NO_RETRY)
    stream.push_text("Hi.")
    stream.end_input()
    with pytest.raises(APIError):
        [ev async for ev in stream]
    await stream.aclose()
    await tts.aclose()


async def test_stt_http_recognize(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    stt = elevenlabs.STT(api_key=KEY, base_url=f"{gateway.http}/v1", http_session=http, language_code="en")
    ev = await stt.recognize(lk_frames(speech("Batch scribe.", 16000), 16000), conn_options=NO_RETRY)
    alt = ev.alternatives[0]
    assert alt.text.lower().split() == expected_words("Batch scribe.")
    assert alt.confidence > 0.9 and alt.end_time > alt.start_time >= 0


@pytest.mark.parametrize("server_vad", [None, {"vad_silence_threshold_secs": 0.5}])
async def test_stt_realtime(gateway: Gateway, http: aiohttp.ClientSession, server_vad: Any) -> None:
    from livekit.agents.stt import SpeechEventType

    stt = elevenlabs.STT(api_key=KEY, base_url=f"{gateway.http}/v1", http_session=http, model="scribe_v2_realtime",
                         sample_rate=16000, server_vad=server_vad, include_timestamps=True, language_code="en")
    stream = stt.stream(conn_options=NO_RETRY)
    text = "Realtime turn works."
    for f in lk_frames(speech(text, 16000) + b"\x00" * 32000, 16000):
        stream.push_frame(f)
    if server_vad is None:
        stream.flush()  # LiveKit's end of turn: pad to 0.3 s and commit
    finals: list[Any] = []

    async def read() -> None:
        async for ev in stream:
            if ev.type == SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(ev)
                return

    await asyncio.wait_for(read(), 10)
    await stream.aclose()
    alt = finals[0].alternatives[0]
    assert alt.text.lower().split() == expected_words(text)
    assert [str(w) for w in alt.words or [] if str(w).strip()] == text.split()


async def test_tts_socket_with_a_chunk_length_schedule(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    # a schedule turns LiveKit's auto_mode off: word tokens, buffered by the gateway until each count
    tts = lk_tts(gateway, http, encoding="pcm_16000", chunk_length_schedule=[50, 80])
    text = "Scheduled text is buffered until it reaches the next count of the schedule, then spoken."
    stream = tts.stream(conn_options=NO_RETRY)
    stream.push_text(text)
    stream.end_input()
    frames = [ev.frame async for ev in stream]
    await stream.aclose()
    assert words(pcm_of(frames), 16000) == expected_words(text)
    await tts.aclose()
