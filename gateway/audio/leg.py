"""One leg of audio between a client and Gradium: the transcoder, the decision to run it off the event
loop (made once per leg), and the base64 of Gradium's `audio` messages, both ways.

Codec work worth a thread hop (anything compressed on either side, PyAV releasing the GIL) runs on the
codec threads; raw PCM resampling and G.711 stay inline, where a hop would cost more than the work.
Client audio to Gradium (STT: WebSocket sessions and HTTP uploads) goes through `feed`/`flush`, which
offload by themselves; Gradium audio to the client (TTS: the `tts_audio` transform) goes through
`from_gradium`/`tail`, called inside the transform, which the runtime offloads as a whole when `heavy`
(`dialects.common.transform_gradium`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gateway.audio.formats import AudioFormat, is_compressed
from gateway.audio.transcode import Transcoder, make_transcoder
from gateway.upstream import protocol as gradium
from gateway.upstream.protocol import Message

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
    """Audio from `src` to `dst` (`src` None: a container, sniffed from its first bytes)."""

    __slots__ = ("heavy", "passthrough", "transcoder")

    def __init__(self, src: AudioFormat | None, dst: AudioFormat) -> None:
        self.transcoder = make_transcoder(src, dst)  # AudioError: the format is not supported
        self.heavy = needs_offload(self.transcoder, src, dst)
        self.passthrough = self.transcoder.passthrough  # the client's bytes are Gradium's: no call per chunk

    # -- client -> Gradium (STT)

    async def pcm(self, chunk: bytes) -> bytes:
        """This chunk in Gradium's format (off the loop when heavy), for `GradiumStream.send_audio`; b"":
        nothing yet."""
        return await offload(self.heavy, self.transcoder.feed, chunk)

    def pcm_inline(self, chunk: bytes) -> bytes:
        """`pcm` for a leg that is not `heavy`, with no coroutine (it runs once per client frame)."""
        return self.transcoder.feed(chunk)

    def flush(self, final: bool = False) -> Message | None:
        """The transcoder's tail: before a Gradium flush (a passthrough holds nothing back), or at the end
        of input (`final`)."""
        if self.transcoder.passthrough and not final:
            return None
        tail = self.transcoder.flush()
        return gradium.audio(tail) if tail else None

    # -- Gradium -> client (TTS), inline: the transform calling these is offloaded when `heavy`

    def from_gradium(self, msg: Message) -> bytes:
        """A Gradium `audio` message's audio in `dst` (b"" while a codec holds it back)."""
        return self.transcoder.feed(gradium.audio_bytes(msg))

    def tail(self) -> bytes:
        """What the codecs held back, at the end of the stream."""
        return self.transcoder.flush()
