"""Pipecat's ElevenLabs services (pipecat-ai 1.14) against the gateway, driven standalone with Pipecat's own
test runner (a pipeline of just the service): WebSocket TTS (multi-stream-input), HTTP TTS (NDJSON with
timestamps), text-to-dialogue TTS, batch STT and realtime STT (which forces wss://, so over TLS). Only the
URL changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    InputAudioRawFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.elevenlabs.dialogue.tts import ElevenLabsDialogueTTSService
from pipecat.services.elevenlabs.stt import ElevenLabsRealtimeSTTService, ElevenLabsSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from gateway.emulator.stats import STATS
from tests.audiocheck import expected_words, speech, words
from tests.conftest import Gateway

KEY = "gsk_test"
RACHEL, EMMA = "21m00Tcm4TlvDq8ikWAM", "YTpq7expH9539ERJ"
RATE = 16000
PARAMS = PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def audio_of(frames: list[Any]) -> np.ndarray:
    chunks = [np.frombuffer(f.audio, np.int16) for f in frames if isinstance(f, TTSAudioRawFrame)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


async def speak(service: Any, *texts: str, settle: float = 1.0) -> list[Any]:
    frames: list[Any] = []
    for text in texts:
        frames += [TTSSpeakFrame(text), SleepFrame(settle)]
    down, _ = await run_test(service, frames_to_send=frames, pipeline_params=PARAMS)
    return list(down)


async def test_websocket_tts(gateway: Gateway) -> None:
    tts = ElevenLabsTTSService(api_key=KEY, url=gateway.ws, sample_rate=RATE,
                               settings=ElevenLabsTTSService.Settings(voice=RACHEL, stability=0.5, speed=1.0))
    down = await speak(tts, "Pipecat speaks through the gateway.", "A second turn.")
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    assert words(audio_of(down), RATE) == expected_words("Pipecat speaks through the gateway. A second turn.")
    assert sum(isinstance(f, TTSStoppedFrame) for f in down) >= 2  # one isFinal per context
    setups = [s["setup"] for s in gateway.emulator.app[STATS].setups if s["route"] == "speech/tts"]
    assert setups[-1]["voice_id"] == EMMA and setups[-1]["output_format"] == "pcm_16000"


async def test_http_tts_with_timestamps(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    tts = ElevenLabsHttpTTSService(api_key=KEY, base_url=gateway.http, aiohttp_session=http, sample_rate=RATE,
                                   settings=ElevenLabsHttpTTSService.Settings(voice=RACHEL))
    down = await speak(tts, "Plain HTTP with timestamps.", settle=0.3)
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    assert words(audio_of(down), RATE) == expected_words("Plain HTTP with timestamps.")


async def test_dialogue_tts(gateway: Gateway) -> None:
    tts = ElevenLabsDialogueTTSService(api_key=KEY, url=gateway.ws, sample_rate=RATE,
                                       settings=ElevenLabsDialogueTTSService.Settings(voice=RACHEL))
    down = await speak(tts, "Eleven v four through Gradium.")
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    assert words(audio_of(down), RATE) == expected_words("Eleven v four through Gradium.")


def audio_frames(pcm: bytes, ms: int = 20) -> list[InputAudioRawFrame]:
    n = RATE * ms // 1000 * 2
    return [InputAudioRawFrame(audio=pcm[i : i + n], sample_rate=RATE, num_channels=1) for i in range(0, len(pcm), n)]


async def test_realtime_stt_over_wss(gateway: Gateway, trust_test_ca: Any) -> None:
    stt = ElevenLabsRealtimeSTTService(api_key=KEY, base_url=gateway.https.removeprefix("https://"),
                                       sample_rate=RATE, include_timestamps=True)
    frames: list[Any] = [VADUserStartedSpeakingFrame(), *audio_frames(speech("Pipecat hears this.", RATE)),
                         VADUserStoppedSpeakingFrame(), SleepFrame(1.0)]
    down, _ = await run_test(stt, frames_to_send=frames, pipeline_params=PARAMS)
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert finals and finals[0].text.lower().split() == expected_words("Pipecat hears this.")
    assert not [f for f in down if isinstance(f, ErrorFrame)]


async def test_segmented_http_stt(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    stt = ElevenLabsSTTService(api_key=KEY, base_url=gateway.http, aiohttp_session=http, sample_rate=RATE)
    frames: list[Any] = [VADUserStartedSpeakingFrame(), *audio_frames(speech("Segment by segment.", RATE)),
                         VADUserStoppedSpeakingFrame(), SleepFrame(1.0)]
    down, _ = await run_test(stt, frames_to_send=frames, pipeline_params=PARAMS)
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert finals and finals[0].text.lower().split() == expected_words("Segment by segment.")
    assert finals[0].language == "eng"
