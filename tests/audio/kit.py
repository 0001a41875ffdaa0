"""Shared helpers for the audio tests: tones, chunked streaming, and independent decoding with PyAV."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np

from gateway.audio.formats import ALAW, MULAW, PCM_F32LE, PCM_S16LE, AudioFormat
from gateway.audio.transcode import Transcoder, make_transcoder

# Demuxer names for headerless outputs, so PyAV can read them back.
RAW_DEMUXERS = {PCM_S16LE: "s16le", PCM_F32LE: "f32le", MULAW: "mulaw", ALAW: "alaw"}


def tone(rate: int, freq: float = 440.0, seconds: float = 1.0, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """float32 `(frames, channels)` sine; every channel carries the same tone."""
    t = np.arange(round(rate * seconds)) / rate
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def pcm_bytes(x: np.ndarray, encoding: str = PCM_S16LE) -> bytes:
    """Raw PCM bytes for a float tone (s16le or f32le)."""
    if encoding == PCM_F32LE:
        return x.astype("<f4").tobytes()
    return np.clip(np.rint(x * 32768), -32768, 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Streamed:
    outputs: list[bytes]  # one per feed, then the flush output last
    transcoder: Transcoder

    @property
    def data(self) -> bytes:
        return b"".join(self.outputs)

    @property
    def feeds_with_output(self) -> int:
        return sum(1 for o in self.outputs[:-1] if o)


def stream(src: AudioFormat | None, dst: AudioFormat, data: bytes, chunk: int) -> Streamed:
    tc = make_transcoder(src, dst)
    outputs = [tc.feed(c) for c in chunks(data, chunk)]
    outputs.append(tc.flush())
    return Streamed(outputs, tc)


def chunk_80ms(fmt: AudioFormat) -> int:
    """Bytes in 80 ms of raw PCM in `fmt`."""
    return int(fmt.sample_rate * 0.08) * fmt.bytes_per_sample * fmt.channels


@dataclass
class Probe:
    codec: str
    sample_rate: int
    channels: int
    samples: np.ndarray  # float64, first channel

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def dominant_hz(self) -> float:
        x = self.samples * np.hanning(len(self.samples))
        spectrum = np.abs(np.fft.rfft(x))
        return float(np.fft.rfftfreq(len(x), 1 / self.sample_rate)[int(spectrum.argmax())])

    def peak(self) -> float:
        # Ignore the edges where codecs fade in/out.
        n = len(self.samples)
        return float(np.abs(self.samples[n // 4 : 3 * n // 4]).max())


def _first_channel(frame: av.AudioFrame) -> np.ndarray:
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels
    first = arr[0] if frame.format.is_planar else arr.reshape(-1, channels)[:, 0]
    if first.dtype == np.int16:
        return first / 32768.0
    if first.dtype == np.int32:
        return first / 2147483648.0
    return first.astype(np.float64)


def probe(data: bytes, fmt: AudioFormat | None = None, container: str | None = None) -> Probe:
    """Decode `data` with PyAV alone. Raw PCM needs `fmt`; other outputs are self-describing."""
    options: dict[str, str] = {}
    if fmt is not None and fmt.is_raw_pcm:
        container = RAW_DEMUXERS[fmt.encoding]
        options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono" if fmt.channels == 1 else "stereo"}
    with av.open(io.BytesIO(data), "r", format=container, options=options) as c:
        stream = c.streams.audio[0]
        frames = list(c.decode(stream))
        assert frames, "no audio decoded"
        return Probe(
            codec=stream.codec_context.name,
            sample_rate=frames[0].sample_rate,
            channels=frames[0].layout.nb_channels,
            samples=np.concatenate([_first_channel(f) for f in frames]),
        )


def _as_sample_format(x: np.ndarray, fmt: str) -> np.ndarray:
    base = fmt.rstrip("p")
    if base == "s16":
        return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)
    if base == "s32":
        return np.clip(np.rint(x.astype(np.float64) * 2**31), -(2**31), 2**31 - 1).astype(np.int32)
    if base == "u8":
        return np.clip(np.rint(x * 128 + 128), 0, 255).astype(np.uint8)
    if base == "dbl":
        return x.astype(np.float64)
    return x


def encode_file(
    muxer: str,
    codec: str,
    rate: int,
    channels: int = 1,
    freq: float = 440.0,
    seconds: float = 1.0,
    bit_rate: int | None = None,
    options: dict[str, str] | None = None,
) -> bytes:
    """An input file made by FFmpeg's own encoders and muxers (not by the code under test)."""
    out = io.BytesIO()
    with av.open(out, "w", format=muxer, options=options or {}) as c:
        s = cast(av.AudioStream, c.add_stream(codec, rate=rate))
        ctx = s.codec_context
        layout = "mono" if channels == 1 else "stereo"
        ctx.layout = layout
        preferred = {"libopus": "flt", "flac": "s16", "pcm_s24le": "s32"}
        fmt = preferred.get(codec) or (av.Codec(codec, "w").audio_formats or [])[0].name
        ctx.format = fmt
        if bit_rate:
            ctx.bit_rate = bit_rate
        if codec == "vorbis":
            ctx.options = {"strict": "experimental"}
        x = _as_sample_format(tone(rate, freq, seconds, channels), fmt)
        plane = np.ascontiguousarray(x.T) if fmt.endswith("p") else x.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(plane, format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return out.getvalue()
