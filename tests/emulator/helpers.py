"""Small helpers shared by the emulator tests."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import aiohttp
import av
import numpy as np
import orjson

from gateway.emulator import tones


async def drain(
    ws: aiohttp.ClientWebSocketResponse, *, until_eos: int | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Messages until the server closes (or until `until_eos` end_of_stream messages arrived).

    The timeout turns a hung server into a failure instead of a stuck suite.
    """
    async with asyncio.timeout(timeout):
        return await _drain(ws, until_eos)


async def _drain(ws: aiohttp.ClientWebSocketResponse, until_eos: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    eos = 0
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = orjson.loads(msg.data)
        out.append(data)
        if data["type"] == "end_of_stream":
            eos += 1
            if until_eos is not None and eos >= until_eos:
                break
    return out


def of_type(msgs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == kind]


def audio_bytes(msgs: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in of_type(msgs, "audio"))


def decode_with_pyav(data: bytes, *, fmt: str | None = None, rate: int = 24000) -> np.ndarray:
    """Any container/codec PyAV reads, to int16 mono at `rate`."""
    out: list[np.ndarray] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(io.BytesIO(data), format=fmt) as container:
        for frame in container.decode(audio=0):
            out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    out.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def wav_bytes(text: str, rate: int = 24000) -> bytes:
    """A tone-coded WAV file written by PyAV (not by the code under test)."""
    pcm, _ = tones.synthesize(text, rate)
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def expected(text: str) -> str:
    return " ".join(tones.normalize_words(text))
