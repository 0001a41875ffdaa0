"""ElevenLabs multi-context TTS socket and realtime STT against the direct Gradium path.

Multi-context (`el_multi_ws`): one client socket, `CONTEXTS` contexts opened one after the other, each
speaking the TTS text in 4 word-aligned chunks, then `flush` + `close_context`, read until every
`isFinal`, then `close_socket` and the close. Direct: one Gradium TTS socket carrying the same requests
side by side (`client_req_id`, `close_ws_on_eos: false`), which is what the gateway does upstream.

- `ttfa_ms`: from sending the first context's first text to its first audio.
- `ttfa_last_ms`: the same for the last context (a context opened on a socket already in use).
- `total_ms`: from the start (before the handshake) until the socket is closed.

Realtime STT (`el_stt_ws`): `input_audio_chunk` messages (80 ms of base64 s16le 16 kHz) then a manual
commit, read until the `committed_transcript`. Direct: Gradium `audio` messages then a `flush`, read until
`flushed` (what a commit becomes upstream).

- `first_word_ms`: from sending the chunk holding the end of the first word to the first transcript
  with a word (`partial_transcript`; a Gradium `text`).
- `commit_ms`: from sending the commit to the `committed_transcript` (Gradium: `flushed`).
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
    STT_RATE,
    VOICE_ID,
    WS_OPTS,
    PathError,
    Sample,
    SttInput,
    Trace,
    TtsInput,
    _b64_len,
    _closed_early,
    _finish,
    _note,
    _texts,
    _words,
    _ws_url,
    now,
)
from paths import _SttRun as SttRun

CONTEXTS = 3
MODEL_ID = "eleven_flash_v2_5"


def js(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@dataclass(frozen=True)
class MultiInput:
    chunks: tuple[str, ...]  # the TTS text in word-aligned chunks (each ends with a space)

    @classmethod
    def build(cls, tts: TtsInput) -> MultiInput:
        chunks = tuple(orjson.loads(m)["text"] for m in tts.ws_gateway_msgs[1:-1])
        return cls(chunks)


class _Contexts:
    def __init__(self) -> None:
        self.t_text: dict[str, float] = {}
        self.t_audio: dict[str, float] = {}
        self.finals: set[str] = set()
        self.bytes = 0

    def audio(self, ctx: str, b64: str) -> None:
        self.t_audio.setdefault(ctx, now())
        self.bytes += _b64_len(b64)

    def sample(self, t0: float, t_open: float, ids: list[str]) -> Sample:
        if len(self.finals) != len(ids) or set(self.t_audio) != set(ids):
            raise PathError(f"contexts with audio {sorted(self.t_audio)}, finished {sorted(self.finals)}")
        return {
            "ttfa_ms": (self.t_audio[ids[0]] - self.t_text[ids[0]]) * 1e3,
            "ttfa_last_ms": (self.t_audio[ids[-1]] - self.t_text[ids[-1]]) * 1e3,
            "total_ms": (now() - t0) * 1e3,
            "connect_ms": (t_open - t0) * 1e3,
            "bytes": self.bytes,
        }


async def multi_gateway(http: aiohttp.ClientSession, base: str, inp: MultiInput, trace: Trace) -> Sample:
    url = f"{_ws_url(base)}/v1/text-to-speech/{VOICE_ID}/multi-stream-input"
    params = {"model_id": MODEL_ID, "output_format": "pcm_24000", "sync_alignment": "true"}
    ids = [f"c{i}" for i in range(CONTEXTS)]
    run = _Contexts()
    t0 = now()
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        for ctx in ids:
            await ws.send_str(js({"text": " ", "context_id": ctx}))
            run.t_text[ctx] = now()
            for chunk in inp.chunks:
                await ws.send_str(js({"text": chunk, "context_id": ctx}))
            await ws.send_str(js({"text": "", "context_id": ctx, "flush": True}))
            await ws.send_str(js({"context_id": ctx, "close_context": True}))
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            ctx = data.get("contextId")
            if data.get("audio"):
                run.audio(ctx, data["audio"])
            elif data.get("isFinal"):
                run.finals.add(ctx)
                if len(run.finals) == len(ids):
                    await ws.send_str(js({"close_socket": True}))
            else:
                _note(trace, "recv", raw)
        if ws.close_code != 1000:
            raise _closed_early(ws, "every isFinal and a 1000 close", trace)
    return run.sample(t0, t_open, ids)


async def multi_direct(http: aiohttp.ClientSession, base: str, inp: MultiInput, trace: Trace) -> Sample:
    ids = [f"c{i}" for i in range(CONTEXTS)]
    run = _Contexts()
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/tts", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        for ctx in ids:
            await ws.send_str(js({"type": "setup", "model_name": "default", "voice_id": VOICE_ID,
                                  "output_format": "pcm_24000", "client_req_id": ctx, "close_ws_on_eos": False}))
            run.t_text[ctx] = now()
            for chunk in inp.chunks:
                await ws.send_str(js({"type": "text", "text": chunk.strip(), "client_req_id": ctx}))
            await ws.send_str(js({"type": "end_of_stream", "client_req_id": ctx}))
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            kind = data.get("type")
            if kind == "audio":
                run.audio(data["client_req_id"], data["audio"])
            elif kind == "end_of_stream":
                run.finals.add(data["client_req_id"])
                if len(run.finals) == len(ids):
                    await ws.close()
            elif kind not in ("text", "ready"):
                _note(trace, "recv", raw)
                if kind == "error":
                    raise PathError(f"error message: {raw[:300]}")
    return run.sample(t0, t_open, ids)


# -- realtime STT --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealtimeInput:
    stt: SttInput
    gateway_msgs: tuple[str, ...]  # input_audio_chunk messages

    @classmethod
    def build(cls, stt: SttInput) -> RealtimeInput:
        msgs = tuple(js({"message_type": "input_audio_chunk", "audio_base_64": base64.b64encode(c).decode(),
                         "commit": False, "sample_rate": STT_RATE}) for c in stt.chunks)
        return cls(stt, msgs)


COMMIT = js({"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True, "sample_rate": STT_RATE})
FLUSH = js({"type": "flush", "flush_id": 1})


def _stt_sample(run: SttRun, t0: float, t_open: float, t_commit: float) -> Sample:
    sample = run.sample(t0, t_open)
    sample["commit_ms"] = (t_commit - run.t_last_sent) * 1e3
    return sample


async def realtime_gateway(http: aiohttp.ClientSession, base: str, inp: RealtimeInput, paced: bool,
                           trace: Trace) -> Sample:
    url = f"{_ws_url(base)}/v1/speech-to-text/realtime"
    params = {"model_id": "scribe_v2_realtime", "audio_format": f"pcm_{STT_RATE}", "commit_strategy": "manual",
              "language_code": "en"}
    run = SttRun(inp.stt, paced)
    t_commit = 0.0
    t0 = now()
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()

        async def read() -> bool:
            nonlocal t_commit
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                kind = data.get("message_type")
                if kind == "partial_transcript":
                    run.saw_words(data["text"], final=False)
                elif kind == "committed_transcript":
                    run.saw_words(data["text"], final=True)
                    t_commit = now()
                    return True
                else:
                    _note(trace, "recv", raw)
            return False

        sender = asyncio.create_task(run.send(ws, inp.gateway_msgs, COMMIT))
        if not await _finish(sender, asyncio.create_task(read()), trace):
            raise _closed_early(ws, "committed_transcript", trace)
    return _stt_sample(run, t0, t_open, t_commit)


async def realtime_direct(http: aiohttp.ClientSession, base: str, inp: RealtimeInput, paced: bool,
                          trace: Trace) -> Sample:
    run = SttRun(inp.stt, paced)
    t_commit = 0.0
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/asr", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        await ws.send_str(js({"type": "setup", "model_name": "default", "input_format": f"pcm_{STT_RATE}",
                              "json_config": {"language": "en"}}))

        async def read() -> bool:
            nonlocal t_commit
            words: list[str] = []
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                kind = data.get("type")
                if kind == "text":
                    run.saw_words(data["text"], final=False)
                    words.append(data["text"])
                elif kind == "flushed":
                    run.saw_words(" ".join(words), final=True)
                    t_commit = now()
                    return True
                elif kind not in ("step", "end_text", "ready"):
                    _note(trace, "recv", raw)
                    if kind == "error":
                        raise PathError(f"error message: {raw[:300]}")
            return False

        sender = asyncio.create_task(run.send(ws, inp.stt.direct_msgs, FLUSH))
        if not await _finish(sender, asyncio.create_task(read()), trace):
            raise _closed_early(ws, "flushed", trace)
    return _stt_sample(run, t0, t_open, t_commit)


def scenarios(scenario: Callable[..., Any], emu: str, gw: str, http: aiohttp.ClientSession, tts: TtsInput,
              stt: SttInput, ws_audio_s: float) -> list[Any]:
    """The ElevenLabs scenarios, built with run.py's `Scenario`."""
    multi = MultiInput.build(tts)
    rt = RealtimeInput.build(stt)
    p = functools.partial
    fast = (p(realtime_direct, http, emu, rt, False), p(realtime_gateway, http, gw, rt, False))
    assert _words(stt.text)  # the transcript check in the JSON compares against these
    return [
        scenario("el_multi_ws", f"multi-stream-input {CONTEXTS} contexts pcm_24000",
                 ("ttfa_ms", "ttfa_last_ms", "total_ms"),
                 p(multi_direct, http, emu, multi), p(multi_gateway, http, gw, multi), ws_audio_s * CONTEXTS),
        scenario("el_stt_ws", "realtime paced pcm_16000 manual commit", ("first_word_ms", "commit_ms"),
                 p(realtime_direct, http, emu, rt, True), p(realtime_gateway, http, gw, rt, True), stt.audio_s,
                 paced=True, warm=fast),
        scenario("el_stt_ws", "realtime fast pcm_16000", ("total_ms", "commit_ms"), *fast, stt.audio_s),
    ]
