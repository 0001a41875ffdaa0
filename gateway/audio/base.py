"""The transcoder interface and the audio error type, shared by every audio module.

They live here rather than in `transcode.py` so the implementation modules can import them
without importing the factory (which imports them); `transcode.py` re-exports both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class AudioError(ValueError):
    """Audio that cannot be decoded or encoded as asked; safe to show to the client."""


class Transcoder(ABC):
    """One audio stream converted chunk by chunk. Create one per stream; not thread-safe."""

    __slots__ = ()
    passthrough: bool = False

    @abstractmethod
    def feed(self, data: bytes) -> bytes:
        """Convert the next chunk; returns whatever output is ready now (possibly b"")."""

    @abstractmethod
    def flush(self) -> bytes:
        """Everything the input so far can still produce: resampler tail, encoder padding.

        Call it at the end of the stream. It may also be called mid-stream (Deepgram `Finalize`):
        later `feed` calls carry on with the same input stream; compressed output then restarts
        with a fresh encoder (a new Ogg/WebM/FLAC stream, more mp3/ADTS frames).
        """

    def prime(self) -> None:  # noqa: B027 - optional hook, most transcoders have nothing to open
        """Open the codecs now, before the first chunk (LAME's setup takes about a millisecond), so the
        first chunk costs only its encoding. Optional: they open on the first chunk anyway."""


class Passthrough(Transcoder):
    """Source and target are the same bytes: hand every chunk back as the same object."""

    __slots__ = ()
    passthrough = True

    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""
