"""The LiveKit Deepgram plugin and Pipecat's Deepgram services through the gateway, driven standalone
(no media server): their STT/TTS objects are built with the gateway as base URL and fed frames directly."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import numpy as np
import pytest

from tests.audiocheck import decode, expected_words, speech, words
from tests.conftest import Gateway
from tests.voiceagents import lk_events, lk_frames, lk_push_paced, pc_audio_frames, pc_params

lk_rtc = pytest.importorskip("livekit.rtc")
lk_stt = pytest.importorskip("livekit.agents.stt")
lk_deepgram = pytest.importorskip("livekit.plugins.deepgram")
pc_frames = pytest.importorskip("pipecat.frames.frames")
pc_utils = pytest.importorskip("pipecat.tests.utils")

KEY = "gsk_test"
TEXT = "hello world. how are you today?"
RATE = 16000


# -- LiveKit -------------------------------------------------------------------------------------


async def test_livekit_stt_v1_stream_and_recognize(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        stt = lk_deepgram.STT(model="nova-3", base_url=f"{gateway.http}/v1/listen", api_key=KEY,
                              http_session=session, keyterm=["Gradium"])
        stream = stt.stream()
        feeder = asyncio.create_task(lk_push_paced(stream, speech(TEXT, RATE) + bytes(RATE * 2)))
        events = await lk_events(stream, feeder)
        T = lk_stt.SpeechEventType
        finals = [ev.alternatives[0].text for ev in events if ev.type == T.FINAL_TRANSCRIPT]
        assert finals == ["Hello world.", "How are you today?"]
        kinds = [ev.type for ev in events]
        assert kinds.count(T.START_OF_SPEECH) == 2 and kinds.count(T.END_OF_SPEECH) == 2
        assert T.INTERIM_TRANSCRIPT in kinds
        r = await stt.recognize(buffer=lk_frames(speech(TEXT, RATE)))
        assert r.type == T.FINAL_TRANSCRIPT and r.alternatives[0].text == "Hello world. How are you today?"
        await stt.aclose()


async def test_livekit_flux_stt_v2(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        stt = lk_deepgram.STTv2(model="flux-general-en", base_url=f"{gateway.ws}/v2/listen", api_key=KEY,
                                http_session=session, eager_eot_threshold=0.5, eot_threshold=0.7)
        stream = stt.stream()
        feeder = asyncio.create_task(lk_push_paced(stream, speech(TEXT, RATE) + bytes(RATE * 2 * 2)))
        events = await lk_events(stream, feeder)
        T = lk_stt.SpeechEventType
        finals = [ev.alternatives[0].text for ev in events if ev.type == T.FINAL_TRANSCRIPT]
        assert finals == ["Hello world.", "How are you today?"]
        kinds = [ev.type for ev in events]
        assert kinds.count(T.START_OF_SPEECH) == 2 and kinds.count(T.END_OF_SPEECH) == 2
        assert T.PREFLIGHT_TRANSCRIPT in kinds  # EagerEndOfTurn
        for ev in events:
            if ev.type == T.FINAL_TRANSCRIPT:
                assert ev.alternatives[0].confidence > 0.5
        await stt.aclose()


async def test_livekit_tts_chunked_and_streamed(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        tts = lk_deepgram.TTS(model="aura-2-thalia-en", base_url=f"{gateway.http}/v1/speak", api_key=KEY,
                              http_session=session, sample_rate=24000)
        audio = b"".join([ev.frame.data.tobytes() async for ev in tts.synthesize("Chunked speech works.")])
        assert words(np.frombuffer(audio, "<i2"), 24000) == expected_words("Chunked speech works.")
        # one segment per stream (LiveKit 1.8 drops a second one); the pooled socket is reused, so the second
        # stream's Speak/Flush go over the socket that already served a Flush
        for texts in (["Streamed speech, ", "word by word."], ["Second ", "segment."]):
            stream = tts.stream()
            for t in texts:
                stream.push_text(t)
            stream.end_input()
            pcm = b"".join([ev.frame.data.tobytes() async for ev in stream])
            assert words(np.frombuffer(pcm, "<i2"), 24000) == expected_words("".join(texts))
            await stream.aclose()
        await tts.aclose()


# -- Pipecat -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quiet_pipecat() -> None:
    logging.getLogger("pipecat").setLevel(logging.WARNING)


async def test_pipecat_stt(gateway: Gateway) -> None:
    from pipecat.services.deepgram.stt import DeepgramSTTService

    stt = DeepgramSTTService(api_key=KEY, base_url=gateway.http, sample_rate=RATE)
    pcm = speech(TEXT, RATE) + bytes(RATE * 2)
    down, _ = await pc_utils.run_test(stt, frames_to_send=[*pc_audio_frames(pcm), pc_utils.SleepFrame(sleep=0.5)],
                                      pipeline_params=pc_params())
    finals = [f.text for f in down if isinstance(f, pc_frames.TranscriptionFrame)]
    assert " ".join(finals) == "Hello world. How are you today?"
    assert any(isinstance(f, pc_frames.InterimTranscriptionFrame) for f in down)


async def test_pipecat_flux_stt(gateway: Gateway) -> None:
    from pipecat.services.deepgram.flux.stt import DeepgramFluxSTTService

    stt = DeepgramFluxSTTService(api_key=KEY, url=f"{gateway.ws}/v2/listen", sample_rate=RATE,
                                 settings=DeepgramFluxSTTService.Settings(model="flux-general-en"),
                                 enable_eager_end_of_turn=True)
    pcm = speech(TEXT, RATE) + bytes(RATE * 2 * 2)
    # a mid-stream settings change goes out as a Configure, which Pipecat keeps in flight until acknowledged
    update = pc_frames.STTUpdateSettingsFrame(delta=DeepgramFluxSTTService.Settings(eot_threshold=0.75))
    down, _ = await pc_utils.run_test(
        stt, frames_to_send=[update, *pc_audio_frames(pcm), pc_utils.SleepFrame(sleep=0.5)],
        pipeline_params=pc_params(), start_timeout=5.0)
    finals = [f.text for f in down if isinstance(f, pc_frames.TranscriptionFrame)]
    assert finals == ["Hello world.", "How are you today?"]
    assert not [f for f in down if isinstance(f, pc_frames.ErrorFrame)]


async def test_pipecat_websocket_tts(gateway: Gateway) -> None:
    from pipecat.services.deepgram.tts import DeepgramTTSService

    tts = DeepgramTTSService(api_key=KEY, base_url=gateway.ws, sample_rate=24000,
                             settings=DeepgramTTSService.Settings(voice="aura-2-thalia-en"))
    down, _ = await pc_utils.run_test(
        tts, frames_to_send=[pc_frames.TTSSpeakFrame(text="Pipecat speaks here."), pc_utils.SleepFrame(sleep=1.0)],
        pipeline_params=pc_params(), start_timeout=5.0)
    pcm = b"".join(f.audio for f in down if isinstance(f, pc_frames.TTSAudioRawFrame))
    assert words(np.frombuffer(pcm, "<i2"), 24000) == expected_words("Pipecat speaks here.")
    assert not [f for f in down if isinstance(f, pc_frames.ErrorFrame)]


async def test_pipecat_http_tts(gateway: Gateway) -> None:
    from pipecat.services.deepgram.tts import DeepgramHttpTTSService

    async with aiohttp.ClientSession() as session:
        tts = DeepgramHttpTTSService(api_key=KEY, aiohttp_session=session, base_url=gateway.http, sample_rate=24000,
                                     settings=DeepgramHttpTTSService.Settings(voice="aura-2-thalia-en"))
        down, _ = await pc_utils.run_test(
            tts, frames_to_send=[pc_frames.TTSSpeakFrame(text="Over plain HTTP.")], pipeline_params=pc_params())
    pcm = b"".join(f.audio for f in down if isinstance(f, pc_frames.TTSAudioRawFrame))
    assert words(decode(pcm, "s16le", 24000).pcm, 24000) == expected_words("Over plain HTTP.")
