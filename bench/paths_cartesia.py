"""Cartesia TTS WebSocket with several contexts against the direct Gradium path.

Gateway (`cartesia_ws`): one Cartesia socket `/tts/websocket`, `CONTEXTS` contexts opened one after the
other, each sending the TTS text in 4 word-aligned generation requests (`continue: true`, raw pcm_s16le
24 kHz, the voice as `{"mode": "id"}`), then `transcript: "", continue: false`; read until every
context's `done`, then close. Direct: one Gradium TTS socket carrying the same requests side by side
(`client_req_id`, `close_ws_on_eos: false`), which is what the gateway does upstream (`multiplex`).

- `ttfa_ms`: from sending the first context's first text to its first audio chunk.
- `ttfa_last_ms`: the same for the last context (opened on a socket already busy with the others).
- `total_ms`: from the start (before the handshake) until every context is done and the socket closed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from paths import (
    API_KEY,
    VOICE_ID,
    WS_OPTS,
    PathError,
    Sample,
    Trace,
    TtsInput,
    _b64_len,
    _note,
    _texts,
    _ws_url,
    now,
)

CONTEXTS = 4
CARTESIA_VOICE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # Katie, mapped to Gradium's Emma (VOICE_ID)
GENERATION = {
    "model_id": "sonic-3",
    "voice": {"mode": "id", "id": CARTESIA_VOICE},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
    "language": "en",
}


def js(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def chunks_of(tts: TtsInput) -> tuple[str, ...]:
    """The TTS text in the word-aligned chunks the other TTS socket paths send (each ends with a space)."""
    return tuple(orjson.loads(m)["text"] for m in tts.ws_gateway_msgs[1:-1])


class _Run:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.t_text: dict[str, float] = {}
        self.t_audio: dict[str, float] = {}
        self.done: set[str] = set()
        self.bytes = 0

    def audio(self, ctx: str, b64: str) -> None:
        self.t_audio.setdefault(ctx, now())
        self.bytes += _b64_len(b64)

    def sample(self, t0: float, t_open: float) -> Sample:
        ids = self.ids
        if self.done != set(ids) or set(self.t_audio) != set(ids):
            raise PathError(f"contexts with audio {sorted(self.t_audio)}, done {sorted(self.done)}")
        return {
            "ttfa_ms": (self.t_audio[ids[0]] - self.t_text[ids[0]]) * 1e3,
            "ttfa_last_ms": (self.t_audio[ids[-1]] - self.t_text[ids[-1]]) * 1e3,
            "total_ms": (now() - t0) * 1e3,
            "connect_ms": (t_open - t0) * 1e3,
            "bytes": self.bytes,
        }


async def cartesia_gateway(http: aiohttp.ClientSession, base: str, chunks: tuple[str, ...], trace: Trace) -> Sample:
    headers = {"X-API-Key": API_KEY, "Cartesia-Version": "2026-03-01"}
    run = _Run([f"c{i}" for i in range(CONTEXTS)])
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/tts/websocket", headers=headers, **WS_OPTS) as ws:
        t_open = now()
        for ctx in run.ids:
            run.t_text[ctx] = now()
            for chunk in chunks:
                await ws.send_str(js({**GENERATION, "context_id": ctx, "transcript": chunk, "continue": True}))
            await ws.send_str(js({**GENERATION, "context_id": ctx, "transcript": "", "continue": False}))
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            kind = data.get("type")
            if kind == "chunk":
                run.audio(data["context_id"], data["data"])
            elif kind == "done":
                run.done.add(data["context_id"])
                if run.done == set(run.ids):
                    await ws.close()
            else:
                _note(trace, "recv", raw)
                if kind == "error":
                    raise PathError(f"error message: {raw[:300]}")
    return run.sample(t0, t_open)


async def cartesia_direct(http: aiohttp.ClientSession, base: str, chunks: tuple[str, ...], trace: Trace) -> Sample:
    run = _Run([f"c{i}" for i in range(CONTEXTS)])
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/tts", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        for ctx in run.ids:
            await ws.send_str(js({"type": "setup", "model_name": "default", "voice_id": VOICE_ID,
                                  "output_format": "pcm_24000", "client_req_id": ctx, "close_ws_on_eos": False,
                                  "json_config": {"rewrite_rules": "en"}}))
            run.t_text[ctx] = now()
            for chunk in chunks:
                await ws.send_str(js({"type": "text", "text": chunk.strip(), "client_req_id": ctx}))
            await ws.send_str(js({"type": "end_of_stream", "client_req_id": ctx}))
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            kind = data.get("type")
            if kind == "audio":
                run.audio(data["client_req_id"], data["audio"])
            elif kind == "end_of_stream":
                run.done.add(data["client_req_id"])
                if run.done == set(run.ids):
                    await ws.close()
            elif kind not in ("text", "ready"):
                _note(trace, "recv", raw)
                if kind == "error":
                    raise PathError(f"error message: {raw[:300]}")
    return run.sample(t0, t_open)


def scenarios(scenario: Callable[..., Any], emu: str, gw: str, http: aiohttp.ClientSession, tts: TtsInput,
              ws_audio_s: float) -> list[Any]:
    """The Cartesia scenarios, built with run.py's `Scenario`."""
    chunks = chunks_of(tts)
    p = functools.partial
    return [
        scenario("cartesia_ws", f"tts/websocket {CONTEXTS} contexts pcm_s16le 24k",
                 ("ttfa_ms", "ttfa_last_ms", "total_ms"),
                 p(cartesia_direct, http, emu, chunks), p(cartesia_gateway, http, gw, chunks),
                 ws_audio_s * CONTEXTS),
    ]
