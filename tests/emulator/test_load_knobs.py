"""The emulator's load-test knobs: per-request first-audio delay, TTS speed, STT replay cache."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.cli import build_parser, emulator_settings
from gateway.emulator import EmulatorSettings, tones
from gateway.emulator.stt_replay import REPLAY

from .conftest import API_KEY, StartEmulator
from .helpers import drain, of_type

EMMA = "YTpq7expH9539ERJ"
DELAY_S = 0.25


async def _first_audio_after(ws: Any, rid: str, text: str) -> tuple[float, list[dict[str, Any]]]:
    """Seconds from sending the request's text to its first audio, and its messages to end_of_stream."""
    await ws.send_json(
        {"type": "setup", "voice_id": EMMA, "output_format": "pcm_8000", "client_req_id": rid, "close_ws_on_eos": False}
    )
    t0 = time.monotonic()
    await ws.send_json({"type": "text", "text": text, "client_req_id": rid})
    await ws.send_json({"type": "end_of_stream", "client_req_id": rid})
    msgs: list[dict[str, Any]] = []
    first = None
    while not of_type(msgs, "end_of_stream"):
        msgs.append(await ws.receive_json(timeout=10))
        if first is None and msgs[-1]["type"] == "audio":
            first = time.monotonic() - t0
    assert first is not None
    return first, msgs


async def test_first_audio_delay_applies_to_every_request_on_a_pooled_socket(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(EmulatorSettings(tts_first_audio_delay_s=DELAY_S))
    async with emu.ws("tts") as ws:
        for rid in ("a", "b", "c"):  # the second and third reuse the open socket, like the gateway's pool
            waited, msgs = await _first_audio_after(ws, rid, "hello there")
            assert waited >= DELAY_S, (rid, waited)
            assert of_type(msgs, "ready") and of_type(msgs, "text")


async def test_first_audio_delay_applies_to_rest(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(EmulatorSettings(tts_first_audio_delay_s=DELAY_S))
    body = {"text": "hello", "voice_id": EMMA, "output_format": "pcm_8000", "only_audio": True}
    t0 = time.monotonic()
    async with emu.http.post(f"{emu.api}post/speech/tts", json=body, headers={"x-api-key": API_KEY}) as resp:
        assert resp.status == 200
        first = await resp.content.readany()
        waited = time.monotonic() - t0
        rest = await resp.read()
    assert first and waited >= DELAY_S
    assert len(first + rest) > 0


def test_emulate_flags_map_to_settings() -> None:
    args = build_parser().parse_args(["emulate", "--first-audio-delay-ms", "100", "--tts-speed", "5", "--stt-replay"])
    s = emulator_settings(args)
    assert (s.tts_first_audio_delay_s, s.tts_realtime_factor, s.stt_replay) == (0.1, 0.2, True)
    plain = emulator_settings(build_parser().parse_args(["emulate"]))
    assert (plain.tts_first_audio_delay_s, plain.tts_realtime_factor, plain.stt_replay) == (0.0, 0.0, False)


def _chunks(text: str) -> list[str]:
    pcm, _ = tones.synthesize(text, 16000)
    raw = pcm.astype("<i2").tobytes()
    step = 2560  # 80 ms at 16 kHz
    return [base64.b64encode(raw[i : i + step]).decode() for i in range(0, len(raw), step)]


async def _transcribe(emu: Any, chunks: list[str], flushes: Iterable[int] = ()) -> list[dict[str, Any]]:
    """The request's messages; a flush goes before each chunk whose index is in `flushes` (once per
    occurrence), len(chunks) meaning before the end of input."""
    at = Counter(flushes)
    async with emu.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm_16000"})
        for i in range(len(chunks) + 1):
            for n in range(at[i]):
                await ws.send_json({"type": "flush", "flush_id": f"{i}.{n}"})
            if i < len(chunks):
                await ws.send_str(orjson.dumps({"type": "audio", "audio": chunks[i]}).decode())
        await ws.send_json({"type": "end_of_stream"})
        msgs = await drain(ws)
    return [{k: v for k, v in m.items() if k != "request_id"} for m in msgs]


async def test_stt_replay_answers_exactly_what_decoding_answers(start_emulator: StartEmulator) -> None:
    decoding = await start_emulator()
    replaying = await start_emulator(EmulatorSettings(stt_replay=True))
    cache = replaying.app[REPLAY]
    same = _chunks("hello world testing")
    other = same[:10] + _chunks("quiet zebra")  # shares a prefix, then differs: rebuilds a real decoder

    want = await _transcribe(decoding, same)
    assert "hello" in [m.get("text") for m in want]
    assert await _transcribe(replaying, same) == want  # first pass decodes and records
    misses = cache.misses
    assert await _transcribe(replaying, same) == want  # second pass replays
    assert cache.misses == misses and cache.hits >= len(same)

    assert await _transcribe(replaying, other) == await _transcribe(decoding, other)
    assert cache.rebuilds == 1  # its first 10 chunks decoded again, to decode what follows
    flushed = await _transcribe(decoding, same, [12])
    assert await _transcribe(replaying, same, [12]) == flushed
    assert await _transcribe(replaying, same, [12]) == flushed


async def test_stt_replay_answers_flushes_anywhere_in_the_audio_without_decoding(start_emulator: StartEmulator) -> None:
    """Under load the gateway's endpointing flushes land a frame earlier or later than in the requests that
    filled the cache: the answers are still exactly decoding's, and no audio is decoded again."""
    decoding = await start_emulator()
    replaying = await start_emulator(EmulatorSettings(stt_replay=True))
    cache = replaying.app[REPLAY]
    same = _chunks("hello world. how are you today?")
    plain = await _transcribe(decoding, same)
    assert await _transcribe(replaying, same) == plain  # the audio, decoded once
    decodes = cache.decodes
    # where earlier requests flushed, a frame either side, and new positions all over the audio
    interleavings = [[12], [13], [11], [0, 5], [20, 21, 22], [len(same)], [7, 7], list(range(0, len(same), 4))]
    interleavings += [[n] for n in range(1, len(same), 3)] + [[n, n + 1] for n in range(2, len(same) - 1, 5)]
    changed = 0
    for flushes in interleavings:
        want = await _transcribe(decoding, same, flushes)
        changed += want != plain
        hits, misses = cache.hits, cache.misses
        assert await _transcribe(replaying, same, flushes) == want, flushes
        # a flush's effect on the words wears off: the audio after it is answered from edges again
        assert cache.hits - hits > cache.misses - misses, flushes
    hits, misses = cache.hits, cache.misses
    assert changed >= len(interleavings) // 2  # the flushes do change the answers (words released early, VAD)
    assert cache.decodes == decodes and cache.rebuilds == 0
    for flushes in interleavings[:4]:  # the second time round, every message is answered from an edge
        assert await _transcribe(replaying, same, flushes) == await _transcribe(decoding, same, flushes)
    assert cache.misses == misses and cache.hits > hits
    async with replaying.http.get(f"{replaying.base}/_emulator/stats") as resp:
        counters = (await resp.json())["stt_replay"]
    assert counters["hits"] == cache.hits and counters["misses"] == misses and counters["decodes"] == decodes


async def test_stt_replay_still_rejects_bad_audio(start_emulator: StartEmulator) -> None:
    emu = await start_emulator(EmulatorSettings(stt_replay=True))
    async with emu.ws("asr") as ws:
        await ws.send_json({"type": "setup", "input_format": "pcm_16000"})
        await ws.send_json({"type": "audio", "audio": "not base64!"})
        msgs = await drain(ws)
    assert of_type(msgs, "error") and "base64" in of_type(msgs, "error")[0]["message"]
