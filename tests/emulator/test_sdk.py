"""The official `gradium` SDK (0.6.4) against the emulator, changing only the base URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gateway.emulator import tone_decoder, tones
from gateway.emulator.voices import CATALOG

from .conftest import Emulator
from .helpers import decode_with_pyav, expected, wav_bytes

TEXT = "Hello from the emulator, spelled in tones. Does it survive?"
EMMA = "YTpq7expH9539ERJ"


async def test_tts_wav_decodes_and_round_trips(emulator: Emulator) -> None:
    result = await emulator.sdk().tts({"voice_id": EMMA}, TEXT)  # no output_format: wav default
    assert result.raw_data[:4] == b"RIFF"
    assert result.sample_rate == 48000
    assert result.request_id and result.request_id.startswith("req_")
    pcm = decode_with_pyav(result.raw_data, rate=48000)
    assert tone_decoder.transcribe(pcm, 48000) == expected(TEXT)
    assert [t.text for t in result.text_with_timestamps] == TEXT.split()  # as written
    starts = [t.start_s for t in result.text_with_timestamps]
    assert starts == sorted(starts)
    assert all(t.stop_s > t.start_s for t in result.text_with_timestamps)


async def test_tts_pcm_and_json_config_string(emulator: Emulator) -> None:
    setup = {"voice_id": EMMA, "output_format": "pcm", "json_config": {"temp": 0.3, "padding_bonus": -1}}
    result = await emulator.sdk().tts(setup, ["split across", "two messages"])  # type: ignore[arg-type]
    assert tone_decoder.transcribe(result.pcm16(), 48000) == "split across two messages"
    async with emulator.http.get(f"{emulator.base}/_emulator/stats") as resp:
        stats = await resp.json()
    last = stats["setups"][-1]
    assert last["route"] == "speech/tts"
    assert last["setup"]["json_config"] == '{"temp": 0.3, "padding_bonus": -1}'  # the SDK sends a string
    assert last["x_api_source"].startswith("python-client/")


async def test_tts_stream_yields_audio_incrementally(emulator: Emulator) -> None:
    stream = await emulator.sdk().tts_stream({"voice_id": EMMA, "output_format": "pcm_24000"}, TEXT)
    assert stream.sample_rate == 24000
    chunks = [chunk async for chunk in stream.iter_bytes()]
    assert len(chunks) > 10
    assert {len(c) for c in chunks} == {1920 * 2}  # 80 ms frames
    pcm = np.frombuffer(b"".join(chunks), np.int16)
    assert tone_decoder.transcribe(pcm, 24000) == expected(TEXT)


async def test_stt_wav_bytes(emulator: Emulator) -> None:
    result = await emulator.sdk().stt({}, wav_bytes(TEXT))  # defaults: input_format wav
    assert result.text == expected(TEXT)
    assert result.request_id
    assert len(result.text_with_timestamps) == len(tones.normalize_words(TEXT))


async def test_stt_numpy_pcm(emulator: Emulator) -> None:
    pcm, timings = tones.synthesize(TEXT, 24000)
    result = await emulator.sdk().stt({"input_format": "pcm"}, pcm, sample_rate=24000)
    assert result.text == expected(TEXT)
    for heard, said in zip(result.text_with_timestamps, timings, strict=True):
        assert heard.start_s == pytest.approx(said.start_s, abs=0.03)


async def test_stt_stream(emulator: Emulator) -> None:
    pcm, _ = tones.synthesize(TEXT, 24000)

    async def audio() -> AsyncIterator[np.ndarray]:
        for i in range(0, len(pcm), 1920):
            yield pcm[i : i + 1920]

    stream = await emulator.sdk().stt_stream({"input_format": "pcm", "json_config": {"delay_in_frames": 16}}, audio())
    assert stream.delay_in_frames == 16
    words = [t.text async for t in stream.iter_text()]
    assert " ".join(words) == expected(TEXT)


async def test_tts_realtime_multiplexed(emulator: Emulator) -> None:
    client = emulator.sdk()
    async with client.tts_realtime(
        voice_id=EMMA, output_format="pcm_16000", client_req_id="a", close_ws_on_eos=False
    ) as tts:
        await tts.send_setup(
            {"voice_id": "LFZvm12tW_z0xfGo", "output_format": "pcm", "client_req_id": "b", "close_ws_on_eos": False}
        )
        await tts.send_text("first request", client_req_id="a")
        await tts.send_text("second one", client_req_id="b")
        await tts.send_eos(client_req_id="b")
        await tts.send_eos(client_req_id="a")
        audio: dict[str, list[bytes]] = {"a": [], "b": []}
        ready: dict[str, dict] = {}
        done: set[str] = set()
        async with asyncio.timeout(10):
            async for msg in tts:
                rid = msg["client_req_id"]  # every message is stamped
                if msg["type"] == "ready":
                    ready[rid] = msg
                elif msg["type"] == "audio":
                    audio[rid].append(msg["audio"])
                elif msg["type"] == "end_of_stream":
                    done.add(rid)
                    if done == {"a", "b"}:
                        break
        assert ready["a"]["sample_rate"] == 16000 and ready["b"]["sample_rate"] == 48000
        assert ready["a"]["request_id"] != ready["b"]["request_id"]
        a = np.frombuffer(b"".join(audio["a"]), np.int16)
        b = np.frombuffer(b"".join(audio["b"]), np.int16)
        assert tone_decoder.transcribe(a, 16000) == "first request"
        assert tone_decoder.transcribe(b, 48000) == "second one"
        # close_ws_on_eos false: the socket is still usable for another request.
        await tts.send_setup({"voice_id": EMMA, "output_format": "pcm_8000", "client_req_id": "a"})
        await tts.send_text("again", client_req_id="a")
        await tts.send_eos(client_req_id="a")
        again = [m async for m in tts]
        assert again[0]["type"] == "ready" and again[-1]["type"] == "end_of_stream"
        pcm = np.frombuffer(b"".join(m["audio"] for m in again if m["type"] == "audio"), np.int16)
        assert tone_decoder.transcribe(pcm, 8000) == "again"


async def test_stt_realtime_flush(emulator: Emulator) -> None:
    pcm, _ = tones.synthesize("flush me now", 24000)
    async with emulator.sdk().stt_realtime(input_format="pcm", wait_for_ready_on_start=True) as stt:
        assert stt.ready["delay_in_frames"] == 10
        for i in range(0, len(pcm), 1920):
            await stt.send_audio(pcm[i : i + 1920])
        await stt.send_flush(flush_id=7)
        words = []
        async with asyncio.timeout(10):
            async for msg in stt:
                if msg["type"] == "text":
                    words.append(msg["text"])
                elif msg["type"] == "flushed":
                    assert msg["flush_id"] == 7
                    break
        # The 800 ms lookahead would still hold the last words back; flush pushed them out.
        assert words == ["flush", "me", "now"]
        await stt.send_eos()
        rest = [m async for m in stt]
        assert rest[-1]["type"] == "end_of_stream"


async def test_voices_and_credits(emulator: Emulator) -> None:
    client = emulator.sdk()
    own = await client.voice_list()
    assert isinstance(own, list) and all(not v["is_catalog"] for v in own)
    everything = await client.voice_get(include_catalog=True)
    uids = {v["uid"] for v in everything}
    assert {v.uid for v in CATALOG} <= uids
    assert {"YTpq7expH9539ERJ", "vjFyp2BcCyTlUmYb", "_6Aslh2DxfmnRLmP", "-uP9MuGtBqAvEyxI"} <= uids
    emma = await client.voice_get(EMMA)  # the SDK appends ?limit=0&include_catalog=0
    assert emma["name"] == "Emma" and emma["is_catalog"] is True and emma["language"] == "en-us"
    assert set(emma) >= {"uid", "name", "description", "language", "is_catalog", "is_pro_clone", "tags"}
    credits = await client.credits()
    assert credits["allocated_credits"] >= credits["remaining_credits"] > 0
    assert {"billing_period", "next_rollover_date", "plan_name"} <= set(credits)


async def test_voice_crud(emulator: Emulator, tmp_path: Path) -> None:
    client = emulator.sdk()
    sample = tmp_path / "me.wav"
    sample.write_bytes(wav_bytes("my voice"))
    created = await client.voice_create(sample, language="en", name="Mine")
    uid = created["uid"]
    assert created["error"] is None
    assert (await client.voice_get(uid))["name"] == "Mine"
    updated = await client.voice_update(uid, description="warm")
    assert updated is not None and updated["description"] == "warm"
    result = await client.tts({"voice_id": uid, "output_format": "pcm"}, "custom voice")
    assert tone_decoder.transcribe(result.pcm16(), 48000) == "custom voice"
    await client.voice_delete(uid)
    with pytest.raises(Exception, match="Voice not found"):
        await client.voice_get(uid)


async def test_sdk_sees_auth_error(emulator: Emulator) -> None:
    with pytest.raises(Exception, match=r"API key is revoked or expired \(1008\)"):
        await emulator.sdk(api_key="revoked_key").tts({"voice_id": EMMA}, "nope")


async def test_sdk_sees_unknown_voice(emulator: Emulator) -> None:
    with pytest.raises(Exception, match=r"Embeddings not found for nope123 \(1011\)"):
        await emulator.sdk().tts({"voice_id": "nope123"}, "hello")
