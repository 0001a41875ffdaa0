"""How many audio seconds a REST STT upload holds, for the shadow budget (specs/traffic.md §4.4: REST STT
is estimated from size and format). Raw audio described by the query (Deepgram `encoding`,
`sample_rate`, `channels`) is exact; a container's own duration is read from its header (PyAV, in a
worker thread: never on the primary's path); anything else counts as 16 kHz 16-bit mono."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Mapping

from gateway.audio.libav import av

PCM16_16K_BYTES_PER_S = 32_000
RAW_SAMPLE_BYTES = {"linear16": 2, "linear32": 4, "mulaw": 1, "alaw": 1}


def raw_seconds(size: int, query: Mapping[str, str]) -> float | None:
    width = RAW_SAMPLE_BYTES.get(query.get("encoding", ""))
    with contextlib.suppress(ValueError):
        rate, channels = int(query.get("sample_rate", "")), int(query.get("channels", "1"))
        if width and rate > 0 and channels > 0:
            return size / (width * rate * channels)
    return None


def container_seconds(body: bytes) -> float | None:
    with contextlib.suppress(Exception), av.open(io.BytesIO(body)) as container:
        if container.duration:
            return float(container.duration / av.time_base)
    return None


async def upload_seconds(body: bytes, content_type: str, query: Mapping[str, str]) -> float:
    seconds = raw_seconds(len(body), query)
    if seconds is None and not content_type.startswith(("multipart/", "application/")):
        seconds = await asyncio.to_thread(container_seconds, body)
    return seconds if seconds is not None else len(body) / PCM16_16K_BYTES_PER_S
