"""One leg of audio between a client and Gradium: the transcoder, the decision to run it off the event
loop (made once per leg), and the Gradium `audio` message for each chunk.

Codec work worth a thread hop (anything compressed on either side, PyAV releasing the GIL) runs on the
codec threads; raw PCM resampling and G.711 stay inline, where a hop would cost more than the work.
Used for client audio to Gradium by WebSocket sessions and HTTP uploads, and (via `needs_offload`) for
Gradium audio to the client by the `tts_audio` transform.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.audio.formats import AudioFormat, is_compressed
from gateway.audio.transcode import Transcoder, make_transcoder
from gateway.upstream import protocol as gradium

T = TypeVar("T")
R = TypeVar("R")

_CODEC_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="codec")


async def offload(heavy: bool, fn: Callable[[T], R], arg: T) -> R:
    """Run codec work on the codec threads when it is heavy; inline when a thread hop would cost more."""
    if not heavy:
        return fn(arg)
    return await asyncio.get_running_loop().run_in_executor(_CODEC_POOL, fn, arg)


def needs_offload(transcoder: Transcoder, src: AudioFormat | None, dst: AudioFormat | None) -> bool:
    """The one rule for "heavy": the transcoder does real work and a compressed format is involved
    (`src` None: sniffed, a container)."""
    return not transcoder.passthrough and (is_compressed(src) or is_compressed(dst))


class AudioLeg:
    """Client audio -> Gradium: `await feed(chunk)` gives the Gradium message to send (or None)."""

    __slots__ = ("heavy", "transcoder")

    def __init__(self, src: AudioFormat | None, dst: AudioFormat) -> None:
        self.transcoder = make_transcoder(src, dst)  # AudioError: the caller's format is not supported
        self.heavy = needs_offload(self.transcoder, src, dst)

    async def feed(self, chunk: bytes) -> dict[str, Any] | None:
        out = await offload(self.heavy, self.transcoder.feed, chunk)
        return gradium.audio(out) if out else None

    def flush(self, final: bool = False) -> dict[str, Any] | None:
        """The transcoder's tail: before a Gradium flush (a passthrough holds nothing back), or at the end
        of input (`final`)."""
        if self.transcoder.passthrough and not final:
            return None
        tail = self.transcoder.flush()
        return gradium.audio(tail) if tail else None
