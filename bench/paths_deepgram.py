"""Deepgram Flux (`/v2/listen`) against the direct Gradium path: turn-taking latency and throughput.

Gateway side: Flux over the gateway (binary 80 ms chunks of s16le 16 kHz, then `CloseStream`), read until
the close. Direct side: the same audio to Gradium's `/api/speech/asr`, with the end of turn decided the way
the gateway's `turns` transform decides it from Gradium's VAD (inactivity probability at the 0.5 s horizon
reaching 0.7, after the last word); so `added` is the cost of the gateway's turn logic (its end-of-turn
flush round trip, translation and framing), not of a different policy.

- `first_word_ms`: from sending the chunk holding the end of the first word to the first transcript with a
  word (Flux `StartOfTurn`; a Gradium `text`).
- `eot_ms`: from sending the chunk holding the end of the last word to the end of turn (Flux `EndOfTurn`
  with every word; Gradium: the step whose probability reaches 0.7 after the last word).
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from paths import (
    API_KEY,
    CHUNK_S,
    CHUNK_SAMPLES,
    STT_DIRECT_SETUP,
    STT_RATE,
    WS_OPTS,
    PathError,
    Sample,
    SttInput,
    Trace,
    _closed_early,
    _finish,
    _note,
    _texts,
    _words,
    _ws_url,
    now,
)

from gateway.emulator import tones

FLUX_TEXT = "Hello world, testing the gateway."
SILENCE_S = 1.2  # after the speech, so the turn ends on the VAD, not on CloseStream
EOT_THRESHOLD = 0.7
HORIZON_S = 0.5


@dataclass(frozen=True)
class FluxInput:
    stt: SttInput  # speech + silence, chunked
    last_word_chunk: int
    last_word_end_s: float

    @classmethod
    def build(cls, text: str = FLUX_TEXT) -> FluxInput:
        base = SttInput.build(text)
        _, timings = tones.synthesize(text, STT_RATE)
        silence = bytes(CHUNK_SAMPLES * 2)
        n_sil = round(SILENCE_S / CHUNK_S)
        chunks = base.chunks + (silence,) * n_sil
        sil_msg = orjson.dumps({"type": "audio", "audio": base64.b64encode(silence).decode()}).decode()
        msgs = base.direct_msgs + (sil_msg,) * n_sil
        end_s = timings[-1].stop_s
        stt = SttInput(text=base.text, expected=base.expected, audio_s=base.audio_s + n_sil * CHUNK_S,
                       chunks=chunks, direct_msgs=msgs, first_word_chunk=base.first_word_chunk)
        return cls(stt, min(len(chunks) - 1, int(end_s * STT_RATE) // CHUNK_SAMPLES), end_s)


class _FluxRun:
    def __init__(self, inp: FluxInput, paced: bool) -> None:
        self.inp = inp
        self.paced = paced
        self.t_first_word_sent = self.t_last_word_sent = self.t_last_sent = 0.0
        self.t_first_word_seen = self.t_eot = 0.0
        self.heard: list[str] = []

    async def send(self, ws: aiohttp.ClientWebSocketResponse, frames: tuple[Any, ...], end: str) -> None:
        binary = isinstance(frames[0], bytes)
        t_start = now()
        for i, frame in enumerate(frames):
            if self.paced:
                delay = t_start + i * CHUNK_S - now()
                if delay > 0:
                    await asyncio.sleep(delay)
            await (ws.send_bytes(frame) if binary else ws.send_str(frame))
            if i == self.inp.stt.first_word_chunk:
                self.t_first_word_sent = now()
            if i == self.inp.last_word_chunk:
                self.t_last_word_sent = now()
        self.t_last_sent = now()
        await ws.send_str(end)

    def word(self, text: str) -> None:
        if text.strip() and not self.t_first_word_seen:
            self.t_first_word_seen = now()

    def end_of_turn(self) -> None:
        if not self.t_eot:
            self.t_eot = now()

    def sample(self, t0: float, t_open: float) -> Sample:
        t_end = now()
        if not self.t_first_word_seen:
            raise PathError("no transcript with a word before the close")
        if not self.t_eot:
            raise PathError("no end of turn before the close")
        return {
            "first_word_ms": max(0.0, self.t_first_word_seen - self.t_first_word_sent) * 1e3,
            "eot_ms": max(0.0, self.t_eot - self.t_last_word_sent) * 1e3,
            "tail_ms": (t_end - self.t_last_sent) * 1e3,
            "total_ms": (t_end - t0) * 1e3,
            "connect_ms": (t_open - t0) * 1e3,
            "audio_s": self.inp.stt.audio_s,
            "words_ok": float(tuple(self.heard) == self.inp.stt.expected),
        }


async def flux_gateway(http: aiohttp.ClientSession, base: str, inp: FluxInput, paced: bool, trace: Trace) -> Sample:
    params = {"model": "flux-general-en", "encoding": "linear16", "sample_rate": str(STT_RATE),
              "eot_threshold": str(EOT_THRESHOLD)}
    run = _FluxRun(inp, paced)
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/v2/listen", params=params,
                               headers={"Authorization": f"Token {API_KEY}"}, **WS_OPTS) as ws:
        t_open = now()

        async def read() -> bool:
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                if data.get("type") == "TurnInfo":
                    run.word(data["transcript"])
                    if data["event"] == "EndOfTurn":
                        _note(trace, "recv", raw)
                        run.heard.extend(_words(data["transcript"]))
                        if run.heard and run.heard[-1] == inp.stt.expected[-1]:
                            run.end_of_turn()
                elif data.get("type") != "Connected":
                    _note(trace, "recv", raw)
            return ws.close_code in (1000, None)

        sender = asyncio.create_task(run.send(ws, inp.stt.chunks, '{"type":"CloseStream"}'))
        if not await _finish(sender, asyncio.create_task(read()), trace):
            raise _closed_early(ws, "a normal close", trace)
    return run.sample(t0, t_open)


def _inactivity(vad: Any) -> float:
    best = min(vad, key=lambda h: abs(float(h.get("horizon_s", 0)) - HORIZON_S))
    return float(best.get("inactivity_prob", 0.0))


async def flux_direct(http: aiohttp.ClientSession, base: str, inp: FluxInput, paced: bool, trace: Trace) -> Sample:
    run = _FluxRun(inp, paced)
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/asr", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        await ws.send_str(STT_DIRECT_SETUP)

        async def read() -> bool:
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                kind = data.get("type")
                if kind == "text":
                    run.word(data["text"])
                    run.heard.extend(_words(data["text"]))
                elif kind == "step":
                    t = float(data.get("total_duration_s") or 0.0)
                    if t > inp.last_word_end_s and _inactivity(data.get("vad") or []) >= EOT_THRESHOLD:
                        run.end_of_turn()
                elif kind == "end_of_stream":
                    return True
                elif kind != "end_text":
                    _note(trace, "recv", raw)
                    if kind == "error":
                        raise PathError(f"error message: {raw[:300]}")
            return False

        sender = asyncio.create_task(run.send(ws, inp.stt.direct_msgs, '{"type":"end_of_stream"}'))
        if not await _finish(sender, asyncio.create_task(read()), trace):
            raise _closed_early(ws, "end_of_stream", trace)
    return run.sample(t0, t_open)


def scenarios(scenario: Callable[..., Any], emu: str, gw: str, http: aiohttp.ClientSession) -> list[Any]:
    """The Flux scenarios, built with run.py's `Scenario` (paced: live microphones; fast: throughput)."""
    inp = FluxInput.build()
    p = functools.partial
    fast = (p(flux_direct, http, emu, inp, False), p(flux_gateway, http, gw, inp, False))
    return [
        scenario("flux_ws", "paced linear16 16k", ("first_word_ms", "eot_ms"),
                 p(flux_direct, http, emu, inp, True), p(flux_gateway, http, gw, inp, True), inp.stt.audio_s,
                 paced=True, warm=fast),
        scenario("flux_ws", "fast linear16 16k", ("total_ms",), *fast, inp.stt.audio_s),
    ]
