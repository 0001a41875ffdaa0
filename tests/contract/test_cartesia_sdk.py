"""The official `cartesia` SDK (4.x) against the gateway, changing only its base URL.

SDK 4 forces `wss://` for the TTS socket, so that test goes through the gateway's TLS listener.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest
from cartesia import AsyncCartesia, AuthenticationError, BadRequestError, NotFoundError

from gateway.emulator.auth import key_id
from gateway.emulator.stats import STATS
from tests.audiocheck import decode, expected_words, speech, wav_bytes, words
from tests.conftest import Gateway

TEXT = "Hello world. This gateway speaks."
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # LiveKit's default Cartesia voice, mapped to Gradium's Emma
EMMA = "YTpq7expH9539ERJ"
RAW16 = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


def client(gw: Gateway, key: str | None = "gsk_test", *, tls: bool = False, token: str | None = None) -> AsyncCartesia:
    return AsyncCartesia(api_key=key, token=token, base_url=gw.https if tls else gw.http, max_retries=0)


def last_setup(gw: Gateway) -> dict[str, Any]:
    return gw.emulator.app[STATS].setups[-1]["setup"]


def said(text: str) -> list[str]:
    return [w.lower() for w in text.split()]


def f32_to_s16(data: bytes) -> np.ndarray:
    return (np.clip(np.frombuffer(data, "<f4"), -1, 1) * 32767).astype(np.int16)


# -- TTS bytes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("voice", [KATIE, {"id": KATIE}, {"mode": "id", "id": KATIE}])
async def test_bytes_raw_pcm_every_voice_shape(gateway: Gateway, voice: Any) -> None:
    resp = await client(gateway).tts.generate(model_id="sonic-3", transcript=TEXT, voice=voice, output_format=RAW16)
    audio = await resp.read()
    pcm = np.frombuffer(audio, "<i2")
    assert words(pcm, 16000) == expected_words(TEXT)
    setup = last_setup(gateway)
    assert setup["voice_id"] == EMMA and setup["output_format"] == "pcm_16000"  # passed through untouched


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ({"container": "wav", "encoding": "pcm_s16le", "sample_rate": 22050}, ("pcm_s16le", 22050)),
        ({"container": "mp3", "sample_rate": 44100, "bit_rate": 128000}, ("mp3", 44100)),
        ({"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}, ("mulaw", 8000)),
        ({"container": "raw", "encoding": "pcm_alaw", "sample_rate": 16000}, ("alaw", 16000)),
    ],
)
async def test_bytes_containers_and_encodings(gateway: Gateway, fmt: dict[str, Any], check: tuple[str, int]) -> None:
    resp = await client(gateway).tts.generate(model_id="sonic-3", transcript=TEXT, voice=KATIE, output_format=fmt)  # type: ignore[arg-type]
    audio = await resp.read()
    codec, rate = check
    d = decode(audio, codec, rate) if codec in ("mulaw", "alaw") else decode(audio)
    assert d.sample_rate == rate
    assert words(d.pcm, rate) == expected_words(TEXT)
    if fmt["container"] == "mp3":
        assert d.codec in ("mp3", "mp3float") and resp.headers["content-type"].startswith("audio/mpeg")
    if fmt["container"] == "wav":
        assert audio[:4] == b"RIFF" and resp.headers["content-type"].startswith("audio/wav")


async def test_bytes_f32_and_speed_controls(gateway: Gateway) -> None:
    resp = await client(gateway).tts.generate(
        model_id="sonic-3", transcript=TEXT, voice={"id": KATIE},
        output_format={"container": "raw", "encoding": "pcm_f32le", "sample_rate": 44100},
        generation_config={"speed": 1.2, "volume": 1.0, "emotion": "calm"}, language="en")
    assert words(f32_to_s16(await resp.read()), 44100) == expected_words(TEXT)
    cfg = last_setup(gateway)["json_config"]
    assert cfg["padding_bonus"] == -2.0 and cfg["rewrite_rules"] == "en"
    await (await client(gateway).tts.generate(model_id="sonic-3", transcript="Hi.", voice=KATIE,
                                               output_format=RAW16, speed="slow")).read()
    assert last_setup(gateway)["json_config"]["padding_bonus"] == 2.0


# -- TTS SSE -----------------------------------------------------------------------------------------

async def test_sse_chunks_timestamps_done(gateway: Gateway) -> None:
    stream = await client(gateway).tts.generate_sse(
        model_id="sonic-3", transcript=TEXT, voice={"id": KATIE}, add_timestamps=True, context_id="ctx-1",
        output_format={"container": "raw", "encoding": "pcm_f32le", "sample_rate": 24000})
    audio, heard, kinds = b"", [], []
    async for ev in stream:  # ends only when the gateway closes the response after `done`
        kinds.append(ev.type)
        assert ev.context_id == "ctx-1"
        if ev.type == "chunk":
            audio += ev.audio or b""
        elif ev.type == "timestamps":
            wt = ev.word_timestamps
            assert wt is not None and len(wt.words) == len(wt.start) == len(wt.end)
            heard += wt.words
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "timestamps" in kinds
    assert words(f32_to_s16(audio), 24000) == expected_words(TEXT)
    assert heard == TEXT.split()


async def test_sse_rejects_non_raw_and_bad_voice(gateway: Gateway) -> None:
    c = client(gateway)
    with pytest.raises(BadRequestError) as e:
        await c.tts.generate_sse(model_id="sonic-3", transcript=TEXT, voice=KATIE,
                                 output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000})  # type: ignore[arg-type]
    assert e.value.status_code == 400 and e.value.body["error_code"] == "invalid_output_format"  # type: ignore[index]
    with pytest.raises(BadRequestError) as e:
        await c.tts.generate_sse(model_id="sonic-3", transcript=TEXT, voice="no-such-voice", output_format=RAW16)  # type: ignore[arg-type]
    assert e.value.body["error_code"] == "voice_not_found"  # type: ignore[index]


# -- TTS WebSocket -----------------------------------------------------------------------------------

async def test_websocket_contexts_flush_and_cancel(gateway: Gateway, trust_test_ca: Any) -> None:
    async with client(gateway, tls=True).tts.websocket_connect() as conn:
        a = conn.context("ctx-a", model_id="sonic-3", voice={"mode": "id", "id": KATIE}, output_format=RAW16,
                         add_timestamps=True)
        b = conn.context("ctx-b", model_id="sonic-3", voice=KATIE, output_format=RAW16)
        gone = conn.context("ctx-gone", model_id="sonic-3", voice=KATIE, output_format=RAW16)
        await a.push("Hello world. ")
        await b.push("This gateway ")
        await gone.push("Never mind this one.")
        await gone.cancel()
        await a.send(transcript="", voice={"mode": "id", "id": KATIE}, flush=True)  # manual flush
        await b.push("speaks.")
        await a.push("This gateway speaks.")
        await a.no_more_inputs()
        await b.no_more_inputs()

        async def drain(ctx: Any) -> list[Any]:
            return [ev async for ev in ctx.receive()]

        events_a, events_b = await asyncio.wait_for(asyncio.gather(drain(a), drain(b)), 30)
    for events in (events_a, events_b):
        assert events[-1].type == "done" and all(ev.type != "done" for ev in events[:-1])
        assert all(ev.context_id in ("ctx-a", "ctx-b") for ev in events)
    audio_a = b"".join(ev.audio or b"" for ev in events_a if ev.type == "chunk")
    assert words(np.frombuffer(audio_a, "<i2"), 16000) == expected_words(TEXT)
    audio_b = b"".join(ev.audio or b"" for ev in events_b if ev.type == "chunk")
    assert words(np.frombuffer(audio_b, "<i2"), 16000) == expected_words("This gateway speaks.")
    # the flush: audio before it has flush_id 1, then flush_done 1, then flush_id 2 until done
    kinds = [(ev.type, getattr(ev, "flush_id", None)) for ev in events_a if ev.type != "timestamps"]
    i = kinds.index(("flush_done", 1))
    assert {k for k in kinds[:i]} == {("chunk", 1)} and {k for k in kinds[i + 1 : -1]} == {("chunk", 2)}
    stamps = [ev.word_timestamps for ev in events_a if ev.type == "timestamps"]
    starts = [s for wt in stamps for s in wt.start]
    assert [w for wt in stamps for w in wt.words] == TEXT.split()
    assert starts == sorted(starts)  # timestamps run on across the flush
    # timestamps carry the flush_id of their audio, as chunks do
    assert [getattr(ev, "flush_id", None) for ev in events_a if ev.type == "timestamps"][:1] == [1]
    assert {getattr(ev, "flush_id", None) for ev in events_a if ev.type == "timestamps"} <= {1, 2}


async def test_v2_compatible_websocket_send(gateway: Gateway, trust_test_ca: Any) -> None:
    ws = await client(gateway, tls=True).tts.websocket()
    out = await ws.send(model_id="sonic-3", transcript=TEXT, voice={"mode": "id", "id": KATIE},
                        output_format=RAW16, stream=False, add_timestamps=True)
    await ws.close()
    assert words(np.frombuffer(out.audio or b"", "<i2"), 16000) == expected_words(TEXT)  # type: ignore[union-attr]
    assert out.word_timestamps["words"] == TEXT.split()  # type: ignore[index,union-attr]


def _sync_websocket(gw: Gateway) -> tuple[bytes, list[str]]:
    from cartesia import Cartesia

    c = Cartesia(api_key="gsk_test", base_url=gw.https, max_retries=0)
    with c.tts.websocket_connect() as conn:
        ctx = conn.context("sync-1", model_id="sonic-3", voice=KATIE, output_format=RAW16)
        ctx.push("Hello world. ")
        ctx.push("This gateway speaks.")
        ctx.no_more_inputs()
        events = list(ctx.receive())
    audio = b"".join(ev.audio or b"" for ev in events if ev.type == "chunk")
    return audio, [ev.type for ev in events]


async def test_sync_client_websocket(gateway: Gateway, trust_test_ca: Any) -> None:
    audio, kinds = await asyncio.to_thread(_sync_websocket, gateway)
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert words(np.frombuffer(audio, "<i2"), 16000) == expected_words(TEXT)


# -- STT -------------------------------------------------------------------------------------------

async def test_transcribe_wav_with_words(gateway: Gateway) -> None:
    r = await client(gateway).stt.transcribe(file=("hello.wav", io.BytesIO(wav_bytes(TEXT, 16000)), "audio/wav"),
                                            model="ink-whisper", language="en", timestamp_granularities=["word"])
    assert said(r.text) == expected_words(TEXT)
    ws = r.words or []
    assert [w.word.lower() for w in ws] == expected_words(TEXT)
    assert all(w.end >= w.start for w in ws) and r.duration and r.duration > 1


async def test_transcribe_mp3_without_words(gateway: Gateway) -> None:
    # text -> TTS mp3 -> STT: the words survive both directions and a container change
    mp3 = await (await client(gateway).tts.generate(
        model_id="sonic-3", transcript=TEXT, voice=KATIE,
        output_format={"container": "mp3", "sample_rate": 44100, "bit_rate": 128000})).read()
    r = await client(gateway).stt.transcribe(file=("a.mp3", mp3, "audio/mpeg"), model="ink-whisper")
    assert said(r.text) == expected_words(TEXT)
    assert not r.words


async def test_stt_websocket_finalize_and_close(gateway: Gateway) -> None:
    audio = speech(TEXT, 16000)
    finals: list[str] = []
    seen: list[str] = []
    async with client(gateway).stt.manual_finalize.websocket(
            encoding="pcm_s16le", model="ink-whisper", sample_rate=16000, language="en") as conn:
        for i in range(0, len(audio), 3200):  # 100 ms chunks
            await conn.send_raw(audio[i : i + 3200])
        await conn.send("finalize")  # type: ignore[arg-type]
        async for ev in conn:
            seen.append(ev.type)
            if ev.type == "transcript" and ev.is_final:
                finals.append(ev.text)
            if ev.type == "flush_done":
                await conn.send("close")  # type: ignore[arg-type]
            if ev.type == "done":
                break
    assert "flush_done" in seen and seen[-1] == "done"
    assert said(" ".join(finals)) == expected_words(TEXT)


async def test_stt_turns_websocket(gateway: Gateway) -> None:
    audio = speech(TEXT, 16000) + bytes(16000 * 2 * 2)  # speech then two seconds of silence
    types: list[str] = []
    ends: list[str] = []
    async with client(gateway).stt.auto_finalize.websocket(encoding="pcm_s16le", model="ink-2", sample_rate=16000,
                                                          keyterm=["Gradium"]) as conn:
        first = await asyncio.wait_for(conn.recv(), 10)
        assert first.type == "connected"
        for i in range(0, len(audio), 3200):
            await conn.send_raw(audio[i : i + 3200])
        await conn.send({"type": "close"})
        async for ev in conn:
            types.append(ev.type)
            if ev.type == "turn.end":
                ends.append(ev.transcript)
    assert types[0] == "turn.start" and "turn.end" in types
    assert said(" ".join(ends)) == expected_words(TEXT)
    assert last_setup(gateway)["json_config"]["keywords"]["words"] == ["Gradium"]


# -- voices, tokens, status, errors ------------------------------------------------------------------

async def test_voices_pagination_and_get(gateway: Gateway) -> None:
    c = client(gateway)
    ids = [v.id async for v in c.voices.list(limit=25)]  # auto-pagination stops on an empty page
    assert len(ids) == len(set(ids)) > 100 and KATIE in ids
    page = await c.voices.list(limit=5, gender="feminine")
    assert len(page.data) == 5 and all(v.gender == "feminine" for v in page.data)
    v = await c.voices.get(KATIE)
    assert v.name == "Katie" and v.language == "en" and v.is_owner is False
    with pytest.raises(NotFoundError):
        await c.voices.get("00000000-0000-0000-0000-000000000000")
    assert (await c.voices.list(limit=10, q="british lady")).data[0].name == "British Lady"


async def test_access_token_scoped_and_never_the_key(gateway: Gateway) -> None:
    tok = (await client(gateway, key="gsk_secret_key").access_token.create(
        grants={"tts": True}, expires_in=60)).token
    assert "gsk_secret_key" not in tok and tok.startswith("eyJ")
    with_token = client(gateway, key=None, token=tok)
    audio = await (await with_token.tts.generate(model_id="sonic-3", transcript=TEXT, voice=KATIE,
                                                 output_format=RAW16)).read()
    assert words(np.frombuffer(audio, "<i2"), 16000) == expected_words(TEXT)
    assert gateway.emulator.app[STATS].setups[-1]["key_id"] == key_id("gsk_secret_key")  # the minter's key
    with pytest.raises(AuthenticationError):  # only the TTS grant
        await with_token.stt.transcribe(file=("a.wav", wav_bytes("hi", 16000), "audio/wav"), model="ink-whisper")
    with pytest.raises(Exception) as e:  # a token cannot mint tokens
        await with_token.access_token.create(grants={"tts": True})
    assert getattr(e.value, "status_code", None) == 403


async def test_access_token_on_websocket_query(gateway: Gateway, trust_test_ca: Any) -> None:
    tok = (await client(gateway).access_token.create(grants={"tts": True, "stt": True})).token
    import aiohttp

    async with aiohttp.ClientSession() as s, s.ws_connect(
            f"{gateway.ws}/tts/websocket?access_token={tok}&cartesia_version=2026-03-01") as ws:
        await ws.send_json({"context_id": "q", "model_id": "sonic-3", "voice": KATIE, "output_format": RAW16,
                            "transcript": "Hi.", "continue": False})
        msgs = [await ws.receive_json(timeout=10)]
        while not msgs[-1].get("done"):
            msgs.append(await ws.receive_json(timeout=10))
    assert msgs[-1]["type"] == "done" and any(m["type"] == "chunk" for m in msgs)


async def test_status_and_errors(gateway: Gateway) -> None:
    assert (await client(gateway).get_status()).ok is True
    with pytest.raises(AuthenticationError) as e:
        await (await client(gateway, key="revoked_key").tts.generate(
            model_id="sonic-3", transcript=TEXT, voice=KATIE, output_format=RAW16)).read()
    assert e.value.status_code == 401
    with pytest.raises(BadRequestError) as e:
        await client(gateway).tts.generate(model_id="sonic-3", transcript=TEXT, voice=KATIE,
                                           output_format={"container": "flac", "sample_rate": 16000})  # type: ignore[arg-type]
    body = e.value.body
    assert body["title"] == "Invalid output format" and body["request_id"]  # type: ignore[index]
