"""LiveKit and Pipecat speak with a voice cloned through the gateway, for ElevenLabs and Cartesia: the
clone's id goes where a stock voice id went, nothing else changes, and the clone's tones are heard."""

from __future__ import annotations

import io
import logging
from typing import Any

import aiohttp
import numpy as np
import pytest
from cartesia import AsyncCartesia
from elevenlabs.client import AsyncElevenLabs
from livekit.agents import APIConnectOptions
from livekit.plugins import cartesia as lk_cartesia
from livekit.plugins import elevenlabs as lk_elevenlabs
from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from gateway.emulator import tone_decoder, tones
from tests.audiocheck import expected_words, wav_bytes, words
from tests.conftest import Gateway
from tests.voiceagents import pc_params

KEY = "gsk_test"
NO_RETRY = APIConnectOptions(max_retry=0, timeout=10)


@pytest.fixture(autouse=True)
def _quiet_pipecat() -> None:
    logging.getLogger("pipecat").setLevel(logging.WARNING)


def clone_spoke(pcm: np.ndarray, rate: int, text: str) -> None:
    assert words(pcm, rate) == expected_words(text)
    assert tone_decoder.tone_length_s(pcm, rate) > tones.TONE_S + 0.003  # not a stock voice's tones


def sample() -> tuple[str, io.BytesIO, str]:
    return ("me.wav", io.BytesIO(wav_bytes("my own voice", 24000)), "audio/wav")


async def pipecat_pcm(service: Any, text: str) -> np.ndarray:
    down, _ = await run_test(service, frames_to_send=[TTSSpeakFrame(text), SleepFrame(1.0)],
                             pipeline_params=pc_params())
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    return np.frombuffer(b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame)), np.int16)


async def test_elevenlabs_clone_in_livekit_and_pipecat(gateway: Gateway) -> None:
    vid = (await AsyncElevenLabs(api_key=KEY, base_url=gateway.http).voices.ivc.create(
        name="Agent voice", files=[sample()])).voice_id
    async with aiohttp.ClientSession() as http:
        tts = lk_elevenlabs.TTS(api_key=KEY, base_url=f"{gateway.http}/v1", http_session=http, voice_id=vid,
                                encoding="pcm_24000")
        frames = [ev.frame async for ev in tts.synthesize("LiveKit over HTTP.", conn_options=NO_RETRY)]
        clone_spoke(np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]), 24000, "LiveKit over HTTP.")
        stream = tts.stream(conn_options=NO_RETRY)  # the multi-context socket
        stream.push_text("LiveKit on the socket.")
        stream.end_input()
        frames = [ev.frame async for ev in stream]
        await stream.aclose()
        clone_spoke(np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]), 24000,
                    "LiveKit on the socket.")
        await tts.aclose()
    pc = ElevenLabsTTSService(api_key=KEY, url=gateway.ws, sample_rate=16000,
                              settings=ElevenLabsTTSService.Settings(voice=vid))
    clone_spoke(await pipecat_pcm(pc, "Pipecat speaks."), 16000, "Pipecat speaks.")


async def test_cartesia_clone_in_livekit_and_pipecat(gateway: Gateway) -> None:
    vid = (await AsyncCartesia(api_key=KEY, base_url=gateway.http, max_retries=0).voices.clone(
        clip=sample(), name="Agent voice", language="en")).id
    async with aiohttp.ClientSession() as http:
        tts = lk_cartesia.TTS(api_key=KEY, base_url=gateway.http, http_session=http, sample_rate=24000, voice=vid)
        audio = b"".join([ev.frame.data.tobytes() async for ev in tts.synthesize("LiveKit over HTTP.")])
        clone_spoke(np.frombuffer(audio, np.int16), 24000, "LiveKit over HTTP.")
        stream = tts.stream()
        stream.push_text("LiveKit on the socket.")
        stream.end_input()
        pcm = b"".join([ev.frame.data.tobytes() async for ev in stream])
        await stream.aclose()
        clone_spoke(np.frombuffer(pcm, np.int16), 24000, "LiveKit on the socket.")
        await tts.aclose()
    pc = CartesiaTTSService(api_key=KEY, url=f"{gateway.ws}/tts/websocket", sample_rate=16000,
                            settings=CartesiaTTSService.Settings(voice=vid))
    clone_spoke(await pipecat_pcm(pc, "Pipecat speaks."), 16000, "Pipecat speaks.")


async def test_deepgram_model_takes_a_gradium_voice_id(gateway: Gateway) -> None:
    """Deepgram has no custom voices; a Gradium voice id (here the org's own voice, by its Gradium uid)
    works as `model` with the official SDK, and it is that voice that speaks."""
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

    from gateway.emulator.state import STATE

    uid, _ = gateway.emulator.app[STATE].voices.create(
        "x", name="Org voice", language="en", description="", start_s=0.0, filename="v.wav")
    uid = uid.uid
    env = DeepgramClientEnvironment(base=gateway.http, production=gateway.ws, agent=gateway.ws,
                                    agent_rest=gateway.http)
    client = AsyncDeepgramClient(api_key=KEY, environment=env)
    audio = b"".join([c async for c in client.speak.v1.audio.generate(
        text="Deepgram speaks.", model=uid, encoding="linear16", container="none", sample_rate=16000)])
    clone_spoke(np.frombuffer(audio, np.int16), 16000, "Deepgram speaks.")


@pytest.mark.filterwarnings("ignore:`pronunciation_dictionary_locators` is deprecated:DeprecationWarning")
async def test_dictionaries_in_pipecat_and_livekit(gateway: Gateway) -> None:
    """A dictionary made with each vendor's SDK is honoured where the voice agents send its id: Pipecat's
    ElevenLabs socket (a context's first message) and LiveKit's Cartesia bytes and socket."""
    from elevenlabs.pronunciation_dictionaries import (
        BodyAddAPronunciationDictionaryV1PronunciationDictionariesAddFromRulesPostRulesItem_Alias as Alias,
    )
    from pipecat.services.elevenlabs.tts import PronunciationDictionaryLocator

    el = await AsyncElevenLabs(api_key=KEY, base_url=gateway.http).pronunciation_dictionaries.create_from_rules(
        name="agents", rules=[Alias(string_to_replace="Acme", alias="ack me")])
    pc = ElevenLabsTTSService(api_key=KEY, url=gateway.ws, sample_rate=16000,
                              settings=ElevenLabsTTSService.Settings(voice="21m00Tcm4TlvDq8ikWAM"),
                              pronunciation_dictionary_locators=[PronunciationDictionaryLocator(
                                  pronunciation_dictionary_id=el.id, version_id=el.version_id)])
    assert words(await pipecat_pcm(pc, "Acme calling."), 16000) == ["ack", "me", "calling."]

    # one Gradium account behind both dialects, so dictionary names are shared: another name here
    ca = await AsyncCartesia(api_key=KEY, base_url=gateway.http, max_retries=0).pronunciation_dicts.create(
        name="agents too", items=[{"text": "Acme", "alias": "ack me"}])
    async with aiohttp.ClientSession() as http:
        tts = lk_cartesia.TTS(api_key=KEY, base_url=gateway.http, http_session=http, sample_rate=24000,
                              pronunciation_dict_id=ca.id)
        audio = b"".join([ev.frame.data.tobytes() async for ev in tts.synthesize("Acme over HTTP.")])
        assert words(np.frombuffer(audio, np.int16), 24000) == ["ack", "me", "over", "http."]
        stream = tts.stream()
        stream.push_text("Acme on the socket.")
        stream.end_input()
        pcm = b"".join([ev.frame.data.tobytes() async for ev in stream])
        await stream.aclose()
        await tts.aclose()
    assert words(np.frombuffer(pcm, np.int16), 24000) == ["ack", "me", "on", "the", "socket."]
