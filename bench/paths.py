"""One coroutine per (path, side). Each runs one session and returns its metrics.

Gateway side: the legacy dialect (ElevenLabs, Deepgram) sent to the gateway. Direct side: the same
kind of aiohttp client speaking Gradium's protocol to the emulator. Message bodies are encoded once,
up front (`TtsInput`, `SttInput`), so the client does as little work as possible while timing.

Every function records what it receives in `trace` (a short ring of message heads) so that a failure
or a timeout can say what the server actually did.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.emulator import tones

VOICE_ID = "YTpq7expH9539ERJ"
API_KEY = "gsk_bench"
MODEL_ID = "eleven_flash_v2_5"
STT_RATE = 16000
CHUNK_S = 0.08
CHUNK_SAMPLES = round(STT_RATE * CHUNK_S)  # 1280 samples, 2560 bytes
# What the gateway asks Gradium for on the Deepgram route, so that both sides ask the same of the emulator.
STT_DIRECT_SETUP = orjson.dumps(
    {"type": "setup", "model_name": "default", "input_format": "pcm_16000", "json_config": {"language": "en"}}
).decode()
WS_OPTS: dict[str, Any] = {"autoping": True, "compress": 0, "max_msg_size": 0}

Sample = dict[str, float]
Trace = deque[str]
now = time.perf_counter


class PathError(Exception):
    """The session did not complete as the protocol says; the message says what was seen."""


def new_trace() -> Trace:
    return deque(maxlen=8)


def _note(trace: Trace, what: str, data: Any) -> None:
    text = data if isinstance(data, str) else repr(data)
    trace.append(f"{what}: {text[:200]}")


async def _texts(ws: aiohttp.ClientWebSocketResponse, trace: Trace) -> AsyncIterator[str]:
    """Text frames until the socket closes; anything else (a close and its reason, binary, error) ends it."""
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            _note(trace, msg.type.name, f"{msg.data!r} {msg.extra or ''}".strip())
            return
        yield msg.data


def _ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


def _b64_len(s: str) -> int:
    return len(s) * 3 // 4 - s.count("=", -2)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def _fail_on_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status != 200:
        body = (await resp.read())[:400].decode(errors="replace")
        raise PathError(f"HTTP {resp.status} ({resp.content_type}): {body!r}")


def _closed_early(ws: aiohttp.ClientWebSocketResponse, expected: str, trace: Trace) -> PathError:
    return PathError(f"socket closed (code {ws.close_code}) before {expected}; last messages: {list(trace)}")


# -- inputs, encoded once ------------------------------------------------------------------------


@dataclass(frozen=True)
class TtsInput:
    text: str
    rest_gateway_body: bytes
    rest_direct_body: bytes
    ws_gateway_msgs: tuple[str, ...]  # {"text": " "}, the chunks, {"text": ""}
    ws_direct_msgs: tuple[str, ...]  # setup, one text per chunk, end_of_stream

    @classmethod
    def build(cls, text: str, n_chunks: int = 4) -> TtsInput:
        words = text.split()
        step = max(1, -(-len(words) // n_chunks))
        chunks = [" ".join(words[i : i + step]) + " " for i in range(0, len(words), step)]

        def js(obj: Any) -> str:
            return orjson.dumps(obj).decode()

        return cls(
            text=text,
            rest_gateway_body=orjson.dumps({"text": text, "model_id": MODEL_ID}),
            rest_direct_body=orjson.dumps(
                {"text": text, "voice_id": VOICE_ID, "output_format": "pcm_48000", "only_audio": True}
            ),
            ws_gateway_msgs=(js({"text": " "}), *(js({"text": c}) for c in chunks), js({"text": ""})),
            ws_direct_msgs=(
                js({"type": "setup", "model_name": "default", "voice_id": VOICE_ID, "output_format": "pcm_24000"}),
                *(js({"type": "text", "text": c.strip()}) for c in chunks),
                js({"type": "end_of_stream"}),
            ),
        )


@dataclass(frozen=True)
class SttInput:
    text: str
    expected: tuple[str, ...]
    audio_s: float
    chunks: tuple[bytes, ...]  # 80 ms of s16le, binary frames for Deepgram
    direct_msgs: tuple[str, ...]  # the same chunks as Gradium `audio` JSON messages
    first_word_chunk: int  # index of the chunk holding the end of the first word

    @classmethod
    def build(cls, text: str, seconds: float = 0.0) -> SttInput:
        """`text` spoken once; with `seconds`, that clip looped (a whole number of times, the nearest) to last
        about that long, so a session is as long as a live stream's, not a clip's (the first word is the first
        clip's)."""
        audio, timings = tones.synthesize(text, STT_RATE)
        loops = max(1, round(seconds * STT_RATE / len(audio)))
        pcm = audio.astype("<i2", copy=False).tobytes() * loops
        step = CHUNK_SAMPLES * 2
        chunks = tuple(pcm[i : i + step] for i in range(0, len(pcm), step))
        msgs = tuple(orjson.dumps({"type": "audio", "audio": base64.b64encode(c).decode()}).decode() for c in chunks)
        end_sample = round(timings[0].stop_s * STT_RATE)
        return cls(
            text=text,
            expected=tuple(_words(" ".join(t.text for t in timings))) * loops,
            audio_s=loops * len(audio) / STT_RATE,
            chunks=chunks,
            direct_msgs=msgs,
            first_word_chunk=min(len(chunks) - 1, max(0, -(-end_sample // CHUNK_SAMPLES) - 1)),
        )


# -- 1. REST TTS ---------------------------------------------------------------------------------


async def _read_body(resp: aiohttp.ClientResponse, t0: float) -> Sample:
    await _fail_on_status(resp)
    ttfa = 0.0
    n = 0
    async for chunk in resp.content.iter_any():
        if chunk and not n:
            ttfa = now() - t0
        n += len(chunk)
    total = now() - t0
    if not n:
        raise PathError(f"HTTP 200 ({resp.content_type}) with an empty body")
    return {"ttfa_ms": ttfa * 1e3, "total_ms": total * 1e3, "bytes": n}


async def tts_rest_gateway(
    http: aiohttp.ClientSession, base: str, inp: TtsInput, output_format: str, trace: Trace
) -> Sample:
    url = f"{base}/v1/text-to-speech/{VOICE_ID}/stream"
    headers = {"xi-api-key": API_KEY, "content-type": "application/json"}
    t0 = now()
    params = {"output_format": output_format}
    async with http.post(url, params=params, data=inp.rest_gateway_body, headers=headers) as r:
        _note(trace, "response", f"{r.status} {r.content_type}")
        return await _read_body(r, t0)


async def tts_rest_direct(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> Sample:
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    t0 = now()
    async with http.post(f"{base}/api/post/speech/tts", data=inp.rest_direct_body, headers=headers) as r:
        _note(trace, "response", f"{r.status} {r.content_type}")
        return await _read_body(r, t0)


# -- 2. WebSocket TTS ----------------------------------------------------------------------------


async def tts_ws_gateway(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> Sample:
    url = f"{_ws_url(base)}/v1/text-to-speech/{VOICE_ID}/stream-input"
    params = {"model_id": MODEL_ID, "output_format": "pcm_24000"}
    t0 = now()
    async with http.ws_connect(url, params=params, headers={"xi-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        first, *rest = inp.ws_gateway_msgs
        await ws.send_str(first)
        t_text = now()
        for m in rest:
            await ws.send_str(m)
        ttfa, n, final = 0.0, 0, False
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            audio = data.get("audio") if isinstance(data, dict) else None
            if audio:
                if not n:
                    ttfa = now() - t_text
                n += _b64_len(audio)
            else:
                _note(trace, "recv", raw)
                if isinstance(data, dict) and data.get("isFinal"):
                    final = True
        if not final or not n:
            raise _closed_early(ws, "audio and isFinal", trace)
    total = now() - t0
    return {"ttfa_ms": ttfa * 1e3, "total_ms": total * 1e3, "connect_ms": (t_open - t0) * 1e3, "bytes": n}


async def tts_ws_direct(http: aiohttp.ClientSession, base: str, inp: TtsInput, trace: Trace) -> Sample:
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/tts", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        setup, *rest = inp.ws_direct_msgs
        await ws.send_str(setup)
        t_text = now()
        for m in rest:
            await ws.send_str(m)
        ttfa, n, final = 0.0, 0, False
        async for raw in _texts(ws, trace):
            data = orjson.loads(raw)
            kind = data.get("type")
            if kind == "audio":
                if not n:
                    ttfa = now() - t_text
                n += _b64_len(data["audio"])
            elif kind == "end_of_stream":
                final = True
            elif kind != "text":
                _note(trace, "recv", raw)
                if kind == "error":
                    raise PathError(f"error message: {raw[:300]}")
        if not final or not n:
            raise _closed_early(ws, "audio and end_of_stream", trace)
    total = now() - t0
    return {"ttfa_ms": ttfa * 1e3, "total_ms": total * 1e3, "connect_ms": (t_open - t0) * 1e3, "bytes": n}


# -- 3. Live STT ---------------------------------------------------------------------------------


class _SttRun:
    """Shared sender side: pace (or not) the chunks and stamp the moments the metrics start from."""

    def __init__(self, inp: SttInput, paced: bool) -> None:
        self.inp = inp
        self.paced = paced
        self.t_first_word_sent = 0.0
        self.t_last_sent = 0.0
        self.t_first_word_seen = 0.0
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
            if i == self.inp.first_word_chunk:
                self.t_first_word_sent = now()
        self.t_last_sent = now()
        await ws.send_str(end)

    def saw_words(self, transcript: str, final: bool) -> None:
        if transcript.strip() and not self.t_first_word_seen:
            self.t_first_word_seen = now()
        if final:
            self.heard.extend(_words(transcript))

    def sample(self, t0: float, t_open: float) -> Sample:
        t_end = now()
        if not self.t_first_word_seen:
            raise PathError("no transcript with a word before the close")
        return {
            "first_word_ms": max(0.0, self.t_first_word_seen - self.t_first_word_sent) * 1e3,
            "tail_ms": (t_end - self.t_last_sent) * 1e3,
            "total_ms": (t_end - t0) * 1e3,
            "connect_ms": (t_open - t0) * 1e3,
            "audio_s": self.inp.audio_s,
            "words_ok": float(tuple(self.heard) == self.inp.expected),
        }


async def _finish(sender: asyncio.Task[None], reader: asyncio.Task[bool], trace: Trace) -> bool:
    """Wait for both sides; the reader's view of a failure (what the server said) wins over the sender's."""
    try:
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            return reader.result()
        if (exc := sender.exception()) is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(reader), 1.0)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
            raise PathError(f"send failed ({type(exc).__name__}: {exc}); last messages: {list(trace)}")
        return await reader
    finally:
        for task in (sender, reader):
            task.cancel()


async def stt_gateway(http: aiohttp.ClientSession, base: str, inp: SttInput, paced: bool, trace: Trace) -> Sample:
    url = f"{_ws_url(base)}/v1/listen"
    params = {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": str(STT_RATE),
        "interim_results": "true",
    }
    run = _SttRun(inp, paced)
    t0 = now()
    async with http.ws_connect(url, params=params, headers={"Authorization": f"Token {API_KEY}"}, **WS_OPTS) as ws:
        t_open = now()

        async def read() -> bool:
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                if data.get("type") == "Results":
                    transcript = data["channel"]["alternatives"][0]["transcript"]
                    run.saw_words(transcript, bool(data.get("is_final")))
                    if transcript:
                        _note(trace, "recv", raw)
                else:
                    _note(trace, "recv", raw)
            return ws.close_code in (1000, None)

        sender = asyncio.create_task(run.send(ws, inp.chunks, '{"type":"CloseStream"}'))
        clean = await _finish(sender, asyncio.create_task(read()), trace)
        if not clean:
            raise _closed_early(ws, "a normal close", trace)
    return run.sample(t0, t_open)


async def stt_direct(http: aiohttp.ClientSession, base: str, inp: SttInput, paced: bool, trace: Trace) -> Sample:
    run = _SttRun(inp, paced)
    t0 = now()
    async with http.ws_connect(f"{_ws_url(base)}/api/speech/asr", headers={"x-api-key": API_KEY}, **WS_OPTS) as ws:
        t_open = now()
        await ws.send_str(STT_DIRECT_SETUP)

        async def read() -> bool:
            async for raw in _texts(ws, trace):
                data = orjson.loads(raw)
                kind = data.get("type")
                if kind == "text":
                    run.saw_words(data["text"], final=True)
                elif kind == "end_of_stream":
                    return True
                elif kind not in ("step", "end_text"):
                    _note(trace, "recv", raw)
                    if kind == "error":
                        raise PathError(f"error message: {raw[:300]}")
            return False

        sender = asyncio.create_task(run.send(ws, inp.direct_msgs, '{"type":"end_of_stream"}'))
        if not await _finish(sender, asyncio.create_task(read()), trace):
            raise _closed_early(ws, "end_of_stream", trace)
    return run.sample(t0, t_open)


def pcm_seconds(n_bytes: float, sample_rate: int) -> float:
    return float(n_bytes) / (2 * sample_rate)
