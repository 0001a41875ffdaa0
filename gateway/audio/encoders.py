"""Sinks: sample blocks in, encoded bytes out, as soon as the codec releases them.

`PcmSink` is numpy only. `EncoderSink` drives a PyAV encoder: elementary streams that are just
concatenated frames (mp3) come straight from the codec; anything that needs framing around the
packets (ADTS headers, Ogg pages, the FLAC stream header, WebM clusters) goes through FFmpeg's
muxer writing into memory with `flush_packets`, so every packet leaves on the feed that made it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, cast

import numpy as np

from .base import AudioError
from .formats import AAC, FLAC, MP3, OGG, OPUS, RAW, WEBM
from .libav import av
from .pcm import PcmEncoder, to_float32, to_int16


class Sink(Protocol):
    def write(self, samples: np.ndarray) -> bytes: ...

    def flush(self) -> bytes: ...

    def prime(self) -> None: ...


class PcmSink:
    """Headerless PCM, optionally preceded once by a (WAV) header."""

    __slots__ = ("_encoder", "_header")

    def __init__(self, kind: str, header: bytes | None = None) -> None:
        self._encoder = PcmEncoder(kind)
        self._header = header

    def write(self, samples: np.ndarray) -> bytes:
        data = self._encoder.encode(samples)
        if self._header is not None:
            data = self._header + data
            self._header = None
        return data

    def flush(self) -> bytes:
        header, self._header = self._header, None
        return header or b""  # an empty stream is still a valid (empty) WAV file

    def prime(self) -> None:
        pass


MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
AAC_RATES = frozenset({7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    codec: str  # PyAV encoder name
    muxer: str | None  # FFmpeg muxer, or None to emit the codec's packets back to back
    int16_format: str | None  # frame sample format used when samples arrive as int16
    float_format: str | None  # ... and when they arrive as float32
    rates: frozenset[int] | None = None  # None: any rate
    default_bit_rate: int | None = None
    muxer_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)


ENCODERS: dict[tuple[str, str], EncoderSpec] = {
    # No bit reservoir: with it, LAME lends a quiet frame's spare bytes to the next frame, so a frame
    # cannot leave before the next one is encoded, and speech starts quiet: the first 80 ms Gradium
    # chunk gave no bytes at all. Without it the first chunk gives two frames at once (LAME's own
    # lookahead, ~40 ms, stays); at our bit rates the quality cost is not audible.
    (MP3, RAW): EncoderSpec("libmp3lame", None, "s16p", "fltp", MP3_RATES, 128_000, codec_options={"reservoir": "0"}),
    (AAC, RAW): EncoderSpec("aac", "adts", None, "fltp", AAC_RATES, 64_000),
    (FLAC, RAW): EncoderSpec(
        "flac",
        "flac",
        "s16",
        None,
        # FFmpeg pads the header with 8 KiB for later tag edits; a stream never gets edited.
        muxer_options={"metadata_header_padding": "0"},
    ),
    (FLAC, OGG): EncoderSpec("flac", "ogg", "s16", None, muxer_options={"page_duration": "20000"}),
    # One Ogg page per 20 ms Opus packet: the muxer holds the newest page back until the next one
    # exists, so longer pages would delay audio by a whole page. Costs ~28 bytes per page.
    (OPUS, OGG): EncoderSpec("libopus", "ogg", "s16", "flt", OPUS_RATES, 64_000, {"page_duration": "20000"}),
    (OPUS, WEBM): EncoderSpec(
        "libopus", "webm", "s16", "flt", OPUS_RATES, 64_000, {"live": "1", "cluster_time_limit": "100"}
    ),
}


def encoder_spec(encoding: str, container: str, sample_rate: int) -> EncoderSpec:
    spec = ENCODERS.get((encoding, container))
    if spec is None:
        raise AudioError(f"cannot produce {encoding} audio in a {container} container")
    if spec.rates is not None and sample_rate not in spec.rates:
        rates = ", ".join(str(r) for r in sorted(spec.rates))
        raise AudioError(f"{encoding} cannot be encoded at {sample_rate} Hz (supported: {rates})")
    return spec


class _Collector:
    """The file object FFmpeg's muxer writes into; we take its bytes after every call."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        if not self._buf:
            return b""
        data = bytes(self._buf)
        self._buf.clear()
        return data


class EncoderSink:
    """A PyAV encoder (and muxer if the format needs one), opened on the first samples."""

    __slots__ = (
        "_bit_rate",
        "_channels",
        "_container",
        "_ctx",
        "_dtype",
        "_format",
        "_layout",
        "_out",
        "_planar",
        "_pts",
        "_rate",
        "_spec",
        "_stream",
        "_time_base",
    )

    def __init__(self, spec: EncoderSpec, sample_rate: int, channels: int, bit_rate: int | None) -> None:
        self._spec = spec
        self._rate = sample_rate
        self._channels = channels
        self._layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")  # "Nc": FFmpeg default
        self._bit_rate = bit_rate or spec.default_bit_rate
        self._time_base = Fraction(1, sample_rate)
        self._pts = 0
        self._ctx: av.AudioCodecContext | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.AudioStream | None = None
        self._out = _Collector()
        self._dtype: np.dtype[Any] = np.dtype(np.float32)
        self._format = ""
        self._planar = False

    def _open(self, dtype: np.dtype[Any]) -> None:
        spec = self._spec
        if dtype == np.int16 and spec.int16_format:
            self._format, self._dtype = spec.int16_format, np.dtype(np.int16)
        elif spec.float_format:
            self._format, self._dtype = spec.float_format, np.dtype(np.float32)
        else:
            self._format, self._dtype = spec.int16_format or "s16", np.dtype(np.int16)
        self._planar = self._format.endswith("p")
        try:
            if spec.muxer is None:
                ctx = cast(av.AudioCodecContext, av.CodecContext.create(spec.codec, "w"))
            else:
                options = {"flush_packets": "1", **spec.muxer_options}
                self._container = av.open(self._out, "w", format=spec.muxer, options=options)
                stream = cast(av.AudioStream, self._container.add_stream(spec.codec, rate=self._rate))
                self._stream = stream
                ctx = stream.codec_context
            ctx.sample_rate = self._rate
            ctx.layout = self._layout
            ctx.format = self._format
            ctx.time_base = self._time_base
            if self._bit_rate:
                ctx.bit_rate = self._bit_rate
            if spec.codec_options:
                ctx.options = dict(spec.codec_options)
            if spec.muxer is None:
                ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(f"cannot start the {spec.codec} encoder") from exc
        self._ctx = ctx

    def prime(self) -> None:
        """Open the encoder ahead of the first samples, for the sample type PCM sources give (int16)."""
        if self._ctx is None:
            with contextlib.suppress(AudioError):  # the first `write` reports it, where errors are handled
                self._open(np.dtype(np.int16))

    def write(self, samples: np.ndarray) -> bytes:
        n = samples.shape[0]
        if not n:
            return b""
        if self._ctx is None:
            self._open(samples.dtype)
        samples = to_int16(samples) if self._dtype == np.int16 else to_float32(samples)
        # Mono is laid out the same planar or packed; only multichannel planar needs a transpose.
        planar = self._planar and self._channels > 1
        plane = np.ascontiguousarray(samples.T) if planar else samples.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(plane, format=self._format, layout=self._layout)
        frame.sample_rate = self._rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += n
        return self._encode(frame)

    def _encode(self, frame: av.AudioFrame | None) -> bytes:
        if self._stream is not None:
            assert self._container is not None
            self._container.mux(self._stream.encode(frame))
            return self._out.take()
        assert self._ctx is not None
        packets = self._ctx.encode(frame)
        if not packets:
            return b""
        if len(packets) == 1:
            return bytes(packets[0])
        return b"".join([bytes(p) for p in packets])

    def flush(self) -> bytes:
        """Drain and close the encoder (and muxer); more samples start a fresh one."""
        if self._ctx is None:
            return b""
        data = self._encode(None)
        if self._container is not None:
            self._container.close()
            data += self._out.take()
        self._ctx = self._container = self._stream = None
        self._pts = 0
        return data
