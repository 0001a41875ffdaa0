"""Pipecat's Cartesia services (1.14) through the gateway, driven standalone with Pipecat's own test
runner (no transport, no media server): WebSocket TTS, HTTP TTS, STT and turns STT."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.audiocheck import expected_words, speech, words
from tests.conftest import Gateway
from tests.voiceagents import pc_audio_frames, pc_params

pc_frames = pytest.importorskip("pipecat.frames.frames")
pc_utils = pytest.importorskip("pipecat.tests.utils")

KEY = "gsk_test"
TEXT = "hello world. how are you today?"
RATE = 16000
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"


@pytest.fixture(autouse=True)
def _quiet_pipecat() -> None:
    logging.getLogger("pipecat").setLevel(logging.WARNING)


def pcm_of(frames: list[Any]) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, pc_frames.TTSAudioRawFrame))


async def test_websocket_tts_two_turns_and_interruption(gateway: Gateway) -> None:
    from pipecat.services.cartesia.tts import CartesiaTTSService

    tts = CartesiaTTSService(api_key=KEY, url=f"{gateway.ws}/tts/websocket", sample_rate=24000,
                             settings=CartesiaTTSService.Settings(voice=KATIE))
    long_text = " ".join(["This long answer gets interrupted."] * 20)
    down, _ = await pc_utils.run_test(
        tts,
        frames_to_send=[
            pc_frames.TTSSpeakFrame(text="Pipecat speaks here."), pc_utils.SleepFrame(sleep=0.6),
            pc_frames.TTSSpeakFrame(text="And a second turn."), pc_utils.SleepFrame(sleep=0.6),
            # barge-in: Pipecat cancels the context; the socket goes on serving the next turn
            pc_frames.TTSSpeakFrame(text=long_text), pc_utils.SleepFrame(sleep=0.05),
            pc_frames.InterruptionFrame(), pc_utils.SleepFrame(sleep=0.2),
            pc_frames.TTSSpeakFrame(text="After the interruption."), pc_utils.SleepFrame(sleep=0.6),
        ],
        pipeline_params=pc_params(), start_timeout=5.0)
    assert not [f for f in down if isinstance(f, pc_frames.ErrorFrame)]
    heard = words(np.frombuffer(pcm_of(down), "<i2"), 24000)
    first = expected_words("Pipecat speaks here. And a second turn.")
    assert heard[: len(first)] == first
    # (the cut word runs into the next turn's first one in the concatenated audio)
    assert heard[-2:] == expected_words("the interruption.") and heard[-3].endswith("after")
    assert len(heard) < len(first) + len(expected_words(long_text))  # the long answer was cut short
    # word timestamps reached Pipecat (it turns them into TTSTextFrames)
    spoken = [f.text for f in down if isinstance(f, pc_frames.TTSTextFrame)]
    assert " ".join(spoken).startswith("Pipecat speaks here. And a second turn.")


async def test_http_tts(gateway: Gateway) -> None:
    from pipecat.services.cartesia.tts import CartesiaHttpTTSService

    async with aiohttp.ClientSession() as session:
        tts = CartesiaHttpTTSService(api_key=KEY, base_url=gateway.http, sample_rate=24000, aiohttp_session=session,
                                     settings=CartesiaHttpTTSService.Settings(voice=KATIE))
        down, _ = await pc_utils.run_test(
            tts, frames_to_send=[pc_frames.TTSSpeakFrame(text="Over plain HTTP.")], pipeline_params=pc_params())
    assert words(np.frombuffer(pcm_of(down), "<i2"), 24000) == expected_words("Over plain HTTP.")


async def test_stt(gateway: Gateway) -> None:
    from pipecat.services.cartesia.stt import CartesiaSTTService

    stt = CartesiaSTTService(api_key=KEY, base_url=gateway.ws, sample_rate=RATE)
    pcm = speech(TEXT, RATE) + bytes(RATE * 2)
    down, _ = await pc_utils.run_test(stt, frames_to_send=[*pc_audio_frames(pcm), pc_utils.SleepFrame(sleep=0.5)],
                                      pipeline_params=pc_params())
    finals = [f.text for f in down if isinstance(f, pc_frames.TranscriptionFrame)]
    assert " ".join(finals) == "Hello world. How are you today?"
    assert not [f for f in down if isinstance(f, pc_frames.ErrorFrame)]


async def test_turns_stt(gateway: Gateway) -> None:
    from pipecat.services.cartesia.turns.stt import CartesiaTurnsSTTService

    stt = CartesiaTurnsSTTService(api_key=KEY, url=f"{gateway.ws}/stt/turns/websocket", sample_rate=RATE)
    pcm = speech(TEXT, RATE) + bytes(RATE * 2 * 2)
    down, _ = await pc_utils.run_test(stt, frames_to_send=[*pc_audio_frames(pcm), pc_utils.SleepFrame(sleep=0.5)],
                                      pipeline_params=pc_params(), start_timeout=5.0)
    finals = [f.text for f in down if isinstance(f, pc_frames.TranscriptionFrame)]
    assert finals == ["Hello world.", "How are you today?"]
    assert not [f for f in down if isinstance(f, pc_frames.ErrorFrame)]
