"""WebSocket protocol details with a raw aiohttp client: order, errors, multiplexing, steps."""

from __future__ import annotations

import base64

import aiohttp
import numpy as np
import pytest

from gateway.emulator import EmulatorSettings, tone_decoder, tones

from .conftest import Emulator, StartEmulator
from .helpers import audio_bytes, drain, of_type

EMMA = "YTpq7expH9539ERJ"
TTS_READY_FIELDS = {"request_id", "model_name", "sample_rate", "frame_size", "audio_stream_names", "text_stream_names"}


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: int, message: str) -> dict:
    msgs = await drain(ws)
    assert msgs[-1] == {"type": "error", "message": message, "code": code} | (
        {"client_req_id": msgs[-1]["client_req_id"]} if "client_req_id" in msgs[-1] else {}
    )
    assert ws.close_code == code
    return msgs[-1]


async def test_input_before_setup(emulator: Emulator) -> None:
    for route, first in (("tts", {"type": "text", "text": "hi"}), ("asr", {"type": "audio", "audio": ""})):
        async with emulator.ws(route) as ws:
            await ws.send_json(first)
            await expect_error(ws, 1002, "Session not found. Send setup first.")


@pytest.mark.parametrize("key", [None, "", "revoked_abc"])
async def test_bad_key(emulator: Emulator, key: str | None) -> None:
    async with emulator.ws("tts", key=key) as ws:
        await expect_error(ws, 1008, "API key is revoked or expired")


async def test_explicit_key_set(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(EmulatorSettings(api_keys=frozenset({"gsk_only"})))
    async with emu.ws("asr", key="gsk_test") as ws:
        await expect_error(ws, 1008, "API key is revoked or expired")
    async with emu.ws("asr", key="gsk_only") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm"})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
        assert [m["type"] for m in msgs] == ["ready", "end_of_stream"]


async def test_unknown_voice(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": "nope", "client_req_id": "x"})
        error = await expect_error(ws, 1011, "Embeddings not found for nope")
        assert error["client_req_id"] == "x"


async def test_unknown_output_format_and_bad_json(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": "mp3"})
        await expect_error(ws, 1003, "Unsupported output format: mp3")
    async with emulator.ws("tts") as ws:
        await ws.send_str("{not json")
        await expect_error(ws, 1003, "Invalid JSON message")
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "json_config": {"cfg_coef": 20}})
        await expect_error(ws, 1003, "cfg_coef should be between 1.0 and 10.0")


async def test_pipelined_tts_and_ready_fields(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        # Setup, text and eos back to back, as the SDK does; plus keys the emulator does not know.
        await ws.send_json({"type": "setup", "voice": "Emma", "output_format": "pcm", "future_key": 1})
        await ws.send_json({"type": "text", "text": "Hello"})
        await ws.send_json({"type": "text", "text": "world."})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
        assert ws.close_code == 1000
    ready = msgs[0]
    assert ready["type"] == "ready"
    assert set(ready) >= TTS_READY_FIELDS
    assert ready["model_name"] == "default"
    assert (ready["sample_rate"], ready["frame_size"]) == (48000, 3840)
    assert msgs[-1] == {"type": "end_of_stream"}
    texts = of_type(msgs, "text")
    assert [t["text"] for t in texts] == ["Hello", "world."]  # whitespace rule: two words, as written
    assert all({"start_s", "stop_s", "stream_id"} <= set(t) and t["stream_id"] == 0 for t in texts)
    audio = of_type(msgs, "audio")
    assert all(len(base64.b64decode(a["audio"])) == 7680 for a in audio)  # 3840 samples
    assert all(a["stream_id"] == 0 and a["stop_s"] - a["start_s"] == pytest.approx(0.08) for a in audio)
    assert [a["start_s"] for a in audio] == pytest.approx([0.08 * i for i in range(len(audio))])
    assert tone_decoder.transcribe(np.frombuffer(audio_bytes(msgs), np.int16), 48000) == "hello world."


async def test_tts_streams_before_end_of_stream(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": "pcm_16000"})
        await ws.send_json({"type": "text", "text": "audio starts before the end"})
        seen = []
        while len(of_type(seen, "audio")) < 5:  # no end_of_stream sent yet
            seen.append(await ws.receive_json(timeout=5))
        await ws.send_json({"type": "text", "text": "<flush>"})
        await ws.send_json({"type": "end_of_stream"})
        seen += await drain(ws)
    pcm = np.frombuffer(audio_bytes(seen), np.int16)
    assert tone_decoder.transcribe(pcm, 16000) == "audio starts before the end"


async def test_tts_flush_tag_pads_the_frame(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        await ws.send_json({"type": "setup", "voice_id": EMMA, "output_format": "pcm_8000"})
        await ws.send_json({"type": "text", "text": "now <flush>"})
        msgs = []
        # Everything for "now" arrives without end_of_stream, ending on a whole 80 ms frame.
        while True:
            msgs.append(await ws.receive_json(timeout=5))
            if msgs[-1]["type"] == "audio" and len(audio_bytes(msgs)) // 2 >= 0.06 * 8000 + 0.3 * 8000:
                break
        await ws.send_json({"type": "end_of_stream"})
        msgs += await drain(ws)
    assert tone_decoder.transcribe(np.frombuffer(audio_bytes(msgs), np.int16), 8000) == "now"
    assert len(audio_bytes(msgs)) % (640 * 2) == 0


async def test_reusing_an_active_client_req_id(emulator: Emulator) -> None:
    async with emulator.ws("tts") as ws:
        setup = {"type": "setup", "voice_id": EMMA, "client_req_id": "dup", "close_ws_on_eos": False}
        await ws.send_json(setup)
        await ws.send_json(setup)
        await expect_error(ws, 1002, "Session already active (dup)")


async def test_sequential_reuse_without_ids(emulator: Emulator) -> None:
    async with emulator.ws("asr") as ws:
        for _ in range(2):
            await ws.send_json({"type": "setup", "input_format": "pcm", "close_ws_on_eos": False})
            await ws.send_json({"type": "end_of_stream"})
            msgs = await drain(ws, until_eos=1)
            assert msgs[0]["type"] == "ready" and msgs[-1]["type"] == "end_of_stream"
        assert not ws.closed


async def test_stt_ready_steps_and_words(emulator: Emulator) -> None:
    text = "one two three. four"
    pcm, timings = tones.synthesize(text, 24000)
    pcm = np.concatenate([pcm, np.zeros(24000 * 2, np.int16)])  # 2 s of silence after speech
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm", "json_config": '{"delay_in_frames": 7}'})
        for i in range(0, len(pcm), 3000):  # not a multiple of the 1920-sample frame
            chunk = pcm[i : i + 3000].tobytes()
            await ws.send_json({"type": "audio", "audio": base64.b64encode(chunk).decode()})
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    ready = msgs[0]
    assert ready == ready | {"type": "ready", "sample_rate": 24000, "frame_size": 1920, "text_stream_names": []}
    assert ready["delay_in_frames"] == ready["delay_in_tokens"] == 7
    steps = of_type(msgs, "step")
    assert len(steps) == -(-len(pcm) // 1920)
    assert [s["step_idx"] for s in steps] == list(range(len(steps)))
    for s in steps:
        assert [v["horizon_s"] for v in s["vad"]] == [0.5, 1.0, 2.0, 3.0]
        assert all(0.0 <= v["inactivity_prob"] <= 1.0 for v in s["vad"])
        assert s["step_duration_s"] == 0.08
    assert steps[-1]["total_duration_s"] == pytest.approx(len(steps) * 0.08)
    # Low while tones play, high after two seconds of silence.
    mid_word = round((timings[0].start_s + timings[0].stop_s) / 2 / 0.08)
    assert steps[mid_word]["vad"][2]["inactivity_prob"] < 0.1
    assert steps[-1]["vad"][2]["inactivity_prob"] > 0.8
    texts, ends = of_type(msgs, "text"), of_type(msgs, "end_text")
    assert [t["text"] for t in texts] == ["one", "two", "three.", "four"]
    assert len(ends) == 4
    for t, e, said in zip(texts, ends, timings, strict=True):
        assert t["stream_id"] == 0 and e["stream_id"] == 0
        assert t["start_s"] == pytest.approx(said.start_s, abs=0.03)
        assert e["stop_s"] == pytest.approx(said.stop_s, abs=0.03)
    # text then its end_text, as a pair
    kinds = [m["type"] for m in msgs if m["type"] in ("text", "end_text")]
    assert kinds == ["text", "end_text"] * 4
    assert msgs[-1]["type"] == "end_of_stream"
    # Words are released after delay_in_frames of lookahead, not before (a word comes out within
    # the frame that completes the lookahead, before that frame's step).
    first_text = next(i for i, m in enumerate(msgs) if m["type"] == "text")
    steps_before = sum(1 for m in msgs[:first_text] if m["type"] == "step")
    released_at = (steps_before + 1) * 0.08
    assert timings[0].stop_s + 7 * 0.08 <= released_at < timings[0].stop_s + 7 * 0.08 + 0.2


async def test_semantic_vad_is_faster_after_sentence_end(emulator: Emulator) -> None:
    async def prob_after_silence(text: str) -> float:
        pcm, _ = tones.synthesize(text, 24000)
        pcm = np.concatenate([pcm, np.zeros(24000, np.int16)])
        async with emulator.ws("asr") as ws:
            await ws.send_json({"type": "setup", "input_format": "pcm"})
            await ws.send_json({"type": "audio", "audio": base64.b64encode(pcm.tobytes()).decode()})
            await ws.send_json({"type": "end_of_stream"})
            steps = of_type(await drain(ws), "step")
        return steps[-1]["vad"][2]["inactivity_prob"]

    assert await prob_after_silence("i am done.") > await prob_after_silence("i am done and")


async def test_stt_flush_id_echoed_as_received(emulator: Emulator) -> None:
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm_16000", "client_req_id": "s1"})
        pcm, _ = tones.synthesize("flushed words", 16000)
        await ws.send_json({"type": "audio", "audio": base64.b64encode(pcm.tobytes()).decode()})
        await ws.send_json({"type": "flush", "flush_id": "1"})  # Pipecat sends a string
        msgs = []
        while not msgs or msgs[-1]["type"] != "flushed":
            msgs.append(await ws.receive_json(timeout=5))
        assert msgs[-1] == {"type": "flushed", "flush_id": "1", "client_req_id": "s1"}
        assert [m["text"] for m in of_type(msgs, "text")] == ["flushed", "words"]
        assert all(m["client_req_id"] == "s1" for m in msgs)
        await ws.send_json({"type": "end_of_stream"})
        assert (await drain(ws))[-1] == {"type": "end_of_stream", "client_req_id": "s1"}


async def test_stt_multiplexed(emulator: Emulator) -> None:
    async with emulator.ws("asr") as ws:
        for rid, text in (("a", "alpha words"), ("b", "bravo")):
            await ws.send_json({"type": "setup", "input_format": "pcm", "client_req_id": rid, "close_ws_on_eos": False})
            pcm, _ = tones.synthesize(text, 24000)
            audio = base64.b64encode(pcm.tobytes()).decode()
            await ws.send_json({"type": "audio", "audio": audio, "client_req_id": rid})
        for rid in ("a", "b"):
            await ws.send_json({"type": "end_of_stream", "client_req_id": rid})
        msgs = await drain(ws, until_eos=2)
    words = {rid: [m["text"] for m in of_type(msgs, "text") if m["client_req_id"] == rid] for rid in "ab"}
    assert words == {"a": ["alpha", "words"], "b": ["bravo"]}


async def test_token_is_single_use(emulator: Emulator) -> None:
    async with emulator.http.get(f"{emulator.api}api-keys/token", headers={"x-api-key": "gsk_test"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["expires_at"].endswith("Z")
    url = f"{emulator.ws_base}/speech/asr?token={body['token']}"
    async with emulator.http.ws_connect(url) as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm"})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
    async with emulator.http.ws_connect(url) as ws:
        await expect_error(ws, 1008, "API key is revoked or expired")


async def test_expired_token(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(EmulatorSettings(token_ttl_s=0.0))
    async with emu.http.get(f"{emu.api}api-keys/token", headers={"x-api-key": "gsk_test"}) as resp:
        token = (await resp.json())["token"]
    async with emu.http.ws_connect(f"{emu.ws_base}/speech/tts?token={token}") as ws:
        await expect_error(ws, 1008, "API key is revoked or expired")


async def test_binary_frames_rejected(emulator: Emulator) -> None:
    async with emulator.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm"})
        await ws.send_bytes(b"\x00\x01")
        msgs = await drain(ws)
        assert msgs[-1]["code"] == 1003 and ws.close_code == 1003
