"""The official `cartesia` SDK (4.x) manages its own voices and pronunciation dictionaries through the
gateway (base URL changed only), then speaks with them over bytes, SSE and the TTS WebSocket."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pytest
from cartesia import AsyncCartesia, BadRequestError, NotFoundError

from gateway.emulator import tone_decoder, tones
from gateway.emulator.stats import STATS
from tests.audiocheck import wav_bytes, words
from tests.conftest import Gateway

RAW24 = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}


def client(gw: Gateway, *, tls: bool = False) -> AsyncCartesia:
    return AsyncCartesia(api_key="gsk_test", base_url=gw.https if tls else gw.http, max_retries=0)


def heard(pcm: bytes) -> str:
    return " ".join(words(np.frombuffer(pcm, "<i2"), 24000))


async def test_clone_dictionary_bytes_sse_websocket(gateway: Gateway, trust_test_ca: Any) -> None:
    c = client(gateway)
    made = await c.voices.clone(clip=("me.wav", io.BytesIO(wav_bytes("my own voice", 24000)), "audio/wav"),
                                name="Narrator", language="en", description="my narrator")
    uuid.UUID(made.id)  # a UUID like every Cartesia voice id
    assert made.name == "Narrator" and made.language == "en"
    mine = await c.voices.list(is_owner=True)
    assert [v.id for v in mine.data] == [made.id] or made.id in [v.id for v in mine.data]
    got = await c.voices.get(made.id)
    assert got.is_owner and got.description == "my narrator"
    updated = await c.voices.update(made.id, name="Narrator 2", description="renamed", gender="feminine")
    assert updated.name == "Narrator 2" and updated.gender == "feminine"
    assert made.id not in [v.id async for v in c.voices.list(is_owner=False, limit=100)]

    d = await c.pronunciation_dicts.create(name="brand", items=[{"text": "Gradium", "alias": "grey dee um"}])
    assert d.items[0].alias == "grey dee um"
    d = await c.pronunciation_dicts.update(d.id, items=[{"text": "Gradium", "alias": "gray dium"},
                                                        {"text": "TTS", "alias": "speech"}])
    assert [i.text for i in d.items] == ["Gradium", "TTS"]
    assert (await c.pronunciation_dicts.retrieve(d.id)).name == "brand"
    assert [x.id async for x in c.pronunciation_dicts.list()] == [d.id]

    resp = await c.tts.generate(model_id="sonic-3", transcript="Gradium does TTS.", voice={"id": made.id},
                                output_format=RAW24, pronunciation_dict_id=d.id)
    pcm = await resp.read()
    assert heard(pcm) == "gray dium does speech."
    assert tone_decoder.tone_length_s(np.frombuffer(pcm, "<i2"), 24000) > tones.TONE_S + 0.003  # the clone spoke
    setup = gateway.emulator.app[STATS].setups[-1]["setup"]
    assert setup["voice_id"] != made.id and setup["pronunciation_id"] != d.id  # Gradium's own uids

    stream = await c.tts.generate_sse(model_id="sonic-3", transcript="TTS via SSE", voice=made.id,
                                      output_format=RAW24, pronunciation_dict_id=d.id)
    audio = b"".join([ev.audio or b"" async for ev in stream if ev.type == "chunk"])
    assert heard(audio) == "speech via sse"

    async with client(gateway, tls=True).tts.websocket_connect() as conn:
        ctx = conn.context("c1", model_id="sonic-3", voice={"mode": "id", "id": made.id}, output_format=RAW24,
                           pronunciation_dict_id=d.id)
        await ctx.push("Gradium on the socket.")
        await ctx.no_more_inputs()
        audio = b"".join([ev.audio or b"" async for ev in ctx.receive() if ev.type == "chunk"])
    assert heard(audio) == "gray dium on the socket."

    await c.pronunciation_dicts.delete(d.id)
    with pytest.raises(NotFoundError):
        await c.pronunciation_dicts.retrieve(d.id)
    with pytest.raises(NotFoundError):
        await c.tts.generate(model_id="sonic-3", transcript="x", voice=made.id, output_format=RAW24,
                             pronunciation_dict_id=d.id)
    await c.voices.delete(made.id)
    with pytest.raises(NotFoundError):
        await c.voices.get(made.id)
    with pytest.raises(BadRequestError) as e:
        await c.tts.generate(model_id="sonic-3", transcript="x", voice=made.id, output_format=RAW24)
    assert e.value.body["error_code"] == "voice_not_found"  # type: ignore[index]


async def test_clone_errors(gateway: Gateway) -> None:
    c = client(gateway)
    with pytest.raises(BadRequestError) as e:
        await c.voices.clone(clip=("e.wav", io.BytesIO(b""), "audio/wav"), name="E", language="en")
    assert e.value.body["error_code"] == "invalid_audio"  # type: ignore[index]
    with pytest.raises(BadRequestError):
        await c.voices.clone(clip=("t.txt", io.BytesIO(b"text, not audio" * 50), "text/plain"), name="T",
                             language="en")
    await c.voices.clone(clip=("a.wav", io.BytesIO(wav_bytes("a", 24000)), "audio/wav"), name="Dup", language="en")
    with pytest.raises(Exception) as e:
        await c.voices.clone(clip=("a.wav", io.BytesIO(wav_bytes("a", 24000)), "audio/wav"), name="dup",
                             language="en")
    assert getattr(e.value, "status_code", None) == 409
    with pytest.raises(NotFoundError):
        await c.voices.update(str(uuid.uuid4()), name="x")
