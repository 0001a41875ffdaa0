"""Sample-level work with numpy and soxr only: bytes <-> arrays, channel mixing, resampling.

Arrays are 2-D `(frames, channels)`, C-contiguous (interleaved, like the wire), and either int16
or float32 in [-1, 1). int16 is kept end to end when both sides are 16-bit (or G.711), so the
common s16 paths never convert to float and back; anything else works in float32.

Sample kinds use FFmpeg's codec names; the first four are `formats` encodings, the rest only
occur inside WAV files we read.
"""

from __future__ import annotations

import numpy as np
import soxr

from . import g711
from .formats import ALAW, MULAW, PCM_F32LE, PCM_S16LE

PCM_U8 = "pcm_u8"
PCM_S24LE = "pcm_s24le"
PCM_S32LE = "pcm_s32le"
PCM_F64LE = "pcm_f64le"

SAMPLE_WIDTH: dict[str, int] = {
    PCM_S16LE: 2,
    PCM_F32LE: 4,
    MULAW: 1,
    ALAW: 1,
    PCM_U8: 1,
    PCM_S24LE: 3,
    PCM_S32LE: 4,
    PCM_F64LE: 8,
}
# Kinds we can write (the rest are input-only).
OUTPUT_KINDS = frozenset({PCM_S16LE, PCM_F32LE, MULAW, ALAW})
# Kinds whose natural array form is int16 (so s16 pipelines stay integer).
INT16_KINDS = frozenset({PCM_S16LE, MULAW, ALAW})

_S16_SCALE = np.float32(32768.0)
_INV_S16 = np.float32(1.0 / 32768.0)
_INV_S32 = np.float32(1.0 / 2147483648.0)

RESAMPLE_QUALITY = "HQ"  # soxr HQ costs ~10% more than LQ here and keeps speech transparent


def to_float32(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.float32:
        return x
    if x.dtype == np.int16:
        return np.multiply(x, _INV_S16, dtype=np.float32)
    return x.astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.int16:
        return x
    # Same rounding and clipping as FFmpeg's flt->s16 conversion (lrintf, then clip).
    y = np.multiply(x, _S16_SCALE, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16)


def natural_dtype(kind: str) -> np.dtype:
    return np.dtype(np.int16) if kind in INT16_KINDS else np.dtype(np.float32)


class PcmDecoder:
    """Headerless PCM bytes -> `(frames, channels)` arrays.

    Chunks may end anywhere, even inside a sample: the incomplete tail is carried to the next call.
    """

    __slots__ = ("_carry", "_frame_bytes", "_s24", "channels", "kind")

    def __init__(self, kind: str, channels: int) -> None:
        if kind not in SAMPLE_WIDTH:
            raise ValueError(f"unknown PCM sample kind {kind!r}")
        self.kind = kind
        self.channels = channels
        self._frame_bytes = SAMPLE_WIDTH[kind] * channels
        self._carry = b""
        self._s24: np.ndarray | None = None

    @property
    def pending(self) -> int:
        """Bytes held back because they do not complete a sample frame yet."""
        return len(self._carry)

    def decode(self, data: bytes | bytearray | memoryview) -> np.ndarray | None:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        usable = len(data) - len(data) % self._frame_bytes
        if usable != len(data):
            self._carry = bytes(data[usable:])
        if not usable:
            return None
        return self._convert(data, usable // SAMPLE_WIDTH[self.kind]).reshape(-1, self.channels)

    def _convert(self, data: bytes | bytearray | memoryview, count: int) -> np.ndarray:
        kind = self.kind
        if kind == PCM_S16LE:
            return np.frombuffer(data, dtype="<i2", count=count)
        if kind == PCM_F32LE:
            return np.frombuffer(data, dtype="<f4", count=count)
        if kind in (MULAW, ALAW):
            return g711.decode(kind, np.frombuffer(data, dtype=np.uint8, count=count))
        if kind == PCM_S24LE:
            return self._convert_s24(data, count)
        if kind == PCM_S32LE:
            return np.multiply(np.frombuffer(data, dtype="<i4", count=count), _INV_S32, dtype=np.float32)
        if kind == PCM_U8:
            raw = np.frombuffer(data, dtype=np.uint8, count=count).astype(np.float32)
            return (raw - np.float32(128.0)) * np.float32(1.0 / 128.0)
        return np.frombuffer(data, dtype="<f8", count=count).astype(np.float32)

    def _convert_s24(self, data: bytes | bytearray | memoryview, count: int) -> np.ndarray:
        # Widen each 3-byte sample to the top of an int32 (low byte 0) so the sign comes for free.
        if self._s24 is None or self._s24.shape[0] < count:
            self._s24 = np.zeros((count, 4), dtype=np.uint8)
        wide = self._s24[:count]
        wide[:, 1:] = np.frombuffer(data, dtype=np.uint8, count=count * 3).reshape(-1, 3)
        return np.multiply(wide.view("<i4").reshape(-1), _INV_S32, dtype=np.float32)


class PcmEncoder:
    """`(frames, channels)` arrays -> headerless PCM bytes of one output kind."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"cannot write PCM sample kind {kind!r}")
        self.kind = kind

    def encode(self, x: np.ndarray) -> bytes:
        kind = self.kind
        if kind == PCM_S16LE:
            return to_int16(x).tobytes()
        if kind == PCM_F32LE:
            return to_float32(x).tobytes()
        return g711.encode(kind, to_int16(x)).tobytes()


def mix_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Match the channel count: average down to mono, copy mono out, otherwise keep/cycle channels."""
    have = x.shape[1]
    if have == channels:
        return x
    f = to_float32(x)
    if channels == 1:
        return f.mean(axis=1, dtype=np.float32, keepdims=True)
    if have == 1:
        return np.repeat(f, channels, axis=1)
    # Multichannel to stereo etc.: front channels come first in every common layout.
    return np.ascontiguousarray(f[:, np.arange(channels) % have])


class Resampler:
    """Streaming soxr resampler for one (rate pair, channel count, dtype)."""

    __slots__ = ("_empty", "_stream", "channels", "dtype", "in_rate", "out_rate")

    def __init__(self, in_rate: int, out_rate: int, channels: int, dtype: np.dtype) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype=self.dtype.name, quality=RESAMPLE_QUALITY)
        self._empty = np.zeros((0, channels), dtype=self.dtype)

    def process(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != self.dtype:
            x = to_int16(x) if self.dtype == np.int16 else to_float32(x)
        return self._stream.resample_chunk(x)

    def drain(self) -> np.ndarray:
        """Everything still inside the filter; the resampler is finished afterwards."""
        return self._stream.resample_chunk(self._empty, last=True)


class SampleChain:
    """Channel mixing then resampling to a fixed target; source rate/dtype may change mid-stream."""

    __slots__ = ("_resampler", "channels", "rate")

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._resampler: Resampler | None = None

    def process(self, x: np.ndarray, rate: int) -> list[np.ndarray]:
        """Returns the arrays to encode, in order (a rate change drains the old filter first)."""
        x = mix_channels(x, self.channels)
        if rate == self.rate:
            if self._resampler is None:
                return [x]
            return [self.drain(), x]
        r = self._resampler
        if r is None or r.in_rate != rate:
            out = [self.drain()] if r is not None else []
            r = self._resampler = Resampler(rate, self.rate, self.channels, x.dtype)
            out.append(r.process(x))
            return out
        return [r.process(x)]

    def drain(self) -> np.ndarray:
        r = self._resampler
        self._resampler = None
        if r is None:
            return np.zeros((0, self.channels), dtype=np.int16)
        return r.drain()
