"""The official `deepgram-sdk` 7.x against the gateway, changing only its environment's base URLs."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.api_error import ApiError

from gateway.emulator.stats import STATS
from tests.audiocheck import expected_words, speech
from tests.conftest import Gateway

TEXT = "hello world. how are you today?"


def dg(gw: Gateway, key: str = "gsk_test") -> AsyncDeepgramClient:
    env = DeepgramClientEnvironment(base=gw.http, production=gw.ws, agent=gw.ws, agent_rest=gw.http)
    return AsyncDeepgramClient(api_key=key, environment=env)


async def stream_audio(conn: Any, audio: bytes, rate: int, chunk_ms: int = 100) -> None:
    step = rate * 2 * chunk_ms // 1000
    for i in range(0, len(audio), step):
        await conn.send_media(audio[i : i + step])
        await asyncio.sleep(0)


async def run_live(gw: Gateway, audio: bytes, rate: int, finalize: bool = False, **opts: Any) -> list[Any]:
    got: list[Any] = []
    async with dg(gw).listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate=str(rate), **opts
    ) as conn:
        await conn.send_keep_alive()
        await stream_audio(conn, audio, rate)
        if finalize:
            await conn.send_finalize()
        await conn.send_close_stream()
        async for msg in conn:
            got.append(msg)
    return got


def finals(msgs: list[Any]) -> list[Any]:
    return [m for m in msgs if getattr(m, "type", None) == "Results" and m.is_final]


async def test_live_transcription_interim_final_speech_final(gateway: Gateway) -> None:
    audio = speech(TEXT, 16000)
    msgs = await run_live(gateway, audio, 16000, interim_results="true", punctuate="true", vad_events="true")
    types = [getattr(m, "type", None) for m in msgs]
    assert types[-1] == "Metadata"
    assert "SpeechStarted" in types
    interims = [m for m in msgs if getattr(m, "type", None) == "Results" and not m.is_final]
    assert interims, "interim results were asked for"
    fin = finals(msgs)
    text = " ".join(m.channel.alternatives[0].transcript for m in fin if m.channel.alternatives[0].transcript)
    assert text.split() == ["Hello", "world.", "How", "are", "you", "today?"]
    words = [w.word for m in fin for w in m.channel.alternatives[0].words]
    assert words == [w.strip(".?") for w in expected_words(TEXT)]
    # Gradium's semantic VAD closes the first sentence before the audio ends
    assert fin[0].speech_final is True and fin[0].channel.alternatives[0].transcript == "Hello world."
    for m in fin:
        assert m.metadata.request_id and m.metadata.model_info.name == "nova-3"
    setup = gateway.emulator.app[STATS].setups[-1]["setup"]
    assert setup["input_format"] == "pcm_16000"  # linear16 at a Gradium rate passes through untouched


async def test_finalize_answers_from_finalize(gateway: Gateway) -> None:
    audio = speech("one two three", 16000)
    msgs = await run_live(gateway, audio, 16000, finalize=True, endpointing="false")
    fin = finals(msgs)
    flagged = [m for m in fin if m.from_finalize]
    assert len(flagged) == 1
    assert " ".join(m.channel.alternatives[0].transcript for m in fin).split() == ["one", "two", "three"]


async def test_resampled_rate(gateway: Gateway) -> None:
    audio = speech(TEXT, 32000)  # not a Gradium rate: decoded and resampled to 24 kHz
    msgs = await run_live(gateway, audio, 32000)
    words = [w.word for m in finals(msgs) for w in m.channel.alternatives[0].words]
    assert words == [w.strip(".?") for w in expected_words(TEXT)]
    assert gateway.emulator.app[STATS].setups[-1]["setup"]["input_format"] == "pcm"


async def test_bad_key_is_refused_at_upgrade(gateway: Gateway) -> None:
    with pytest.raises(ApiError) as e:
        async with dg(gateway, key="revoked_key").listen.v1.connect(model="nova-3"):
            pass
    assert e.value.status_code == 401


async def test_upgrade_carries_request_id_and_subprotocol_auth(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{gateway.ws}/v1/listen?encoding=linear16&sample_rate=16000",
                                protocols=("token", "gsk_test")) as ws:
            assert ws.protocol == "token"
            assert ws._response.headers.get("dg-request-id")
            await ws.send_str('{"type": "CloseStream"}')
            msg = await ws.receive_json()
            assert msg["type"] == "Metadata"
            closing = await ws.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
        async with s.get(f"{gateway.http}/v1/listen") as r:
            # no credentials: refused before the upgrade, Deepgram-shaped
            assert r.status == 401
            body = await r.json()
            assert body["err_code"] == "INVALID_AUTH" and r.headers["dg-error"]
            assert r.headers["dg-request-id"] == body["request_id"]


async def test_prerecorded_file(gateway: Gateway) -> None:
    from tests.audiocheck import wav_bytes

    audio = wav_bytes("Hello there. How are you today?", 16000)
    r = await dg(gateway).listen.v1.media.transcribe_file(
        request=audio, model="nova-3", smart_format=True, utterances=True, paragraphs=True, utt_split=0.25)
    assert r.metadata.request_id and r.metadata.sha256 and r.metadata.duration > 1.0
    assert r.metadata.channels == 1 and r.metadata.models
    alt = r.results.channels[0].alternatives[0]
    assert alt.transcript == "Hello there. How are you today?"
    assert [w.word for w in alt.words] == ["hello", "there", "how", "are", "you", "today"]
    assert alt.words[0].punctuated_word == "Hello" and alt.words[0].end > alt.words[0].start
    assert [u.transcript for u in r.results.utterances] == ["Hello there.", "How are you today?"]


async def test_prerecorded_errors(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gateway.http}/v1/listen", data=b"\x13\x37" * 500,
                          headers={"Authorization": "Token k", "Content-Type": "audio/mpeg"}) as r:
            body = await r.json()
            assert r.status == 400 and body["err_msg"] and r.headers["dg-request-id"] == body["request_id"]
        async with s.post(f"{gateway.http}/v1/listen", json={"url": "https://example.com/a.wav"},
                          headers={"Authorization": "Token k"}) as r:
            assert r.status == 400 and "URL" in (await r.json())["err_msg"]
        async with s.post(f"{gateway.http}/v1/listen", data=b"", headers={"Authorization": "Token k"}) as r:
            assert r.status == 400
