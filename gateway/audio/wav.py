"""RIFF/WAVE headers: build a streaming header, and parse one progressively from chunks.

Streaming writers cannot know the length up front, so (like most TTS servers) we write 0xFFFFFFFF
as the RIFF and data sizes; readers, FFmpeg included, then read the data until the stream ends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import AudioError
from .formats import ALAW, MULAW, PCM_F32LE, PCM_S16LE
from .pcm import PCM_F64LE, PCM_S24LE, PCM_S32LE, PCM_U8

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

UNKNOWN_SIZE = 0xFFFFFFFF

_KIND_BY_TAG_BITS: dict[tuple[int, int], str] = {
    (WAVE_FORMAT_PCM, 8): PCM_U8,
    (WAVE_FORMAT_PCM, 16): PCM_S16LE,
    (WAVE_FORMAT_PCM, 24): PCM_S24LE,
    (WAVE_FORMAT_PCM, 32): PCM_S32LE,
    (WAVE_FORMAT_IEEE_FLOAT, 32): PCM_F32LE,
    (WAVE_FORMAT_IEEE_FLOAT, 64): PCM_F64LE,
    (WAVE_FORMAT_ALAW, 8): ALAW,
    (WAVE_FORMAT_MULAW, 8): MULAW,
}
_TAG_BITS_BY_KIND = {kind: tb for tb, kind in _KIND_BY_TAG_BITS.items()}

_MAX_FMT_BYTES = 4096  # a real fmt chunk is 16..40 bytes; anything huge is garbage


@dataclass(frozen=True, slots=True)
class WavSpec:
    kind: str  # a `pcm` sample kind
    sample_rate: int
    channels: int


def wav_header(kind: str, sample_rate: int, channels: int) -> bytes:
    """A streaming WAV header (sizes unknown) for one of the writable sample kinds."""
    tag, bits = _TAG_BITS_BY_KIND[kind]
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block_align, block_align, bits)
    if tag != WAVE_FORMAT_PCM:
        fmt += b"\x00\x00"  # cbSize: non-PCM fmt chunks are WAVEFORMATEX (18 bytes)
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", UNKNOWN_SIZE),
            b"WAVE",
            b"fmt ",
            struct.pack("<I", len(fmt)),
            fmt,
            b"data",
            struct.pack("<I", UNKNOWN_SIZE),
        )
    )


def parse_fmt(body: bytes | bytearray) -> WavSpec:
    """The sample layout described by a `fmt ` chunk body; AudioError if we cannot read it."""
    if len(body) < 16:
        raise AudioError("corrupt WAV header: fmt chunk too short")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
        # The real format tag is the first two bytes of the SubFormat GUID.
        (tag,) = struct.unpack_from("<H", body, 24)
    kind = _KIND_BY_TAG_BITS.get((tag, bits))
    if kind is None:
        raise AudioError(f"unsupported WAV encoding (format tag 0x{tag:04x}, {bits} bits)")
    if not 1 <= channels <= 8:
        raise AudioError(f"unsupported WAV channel count {channels}")
    if not 1000 <= rate <= 192000:
        raise AudioError(f"unsupported WAV sample rate {rate}")
    return WavSpec(kind, rate, channels)


_RIFF, _CHUNK, _FMT, _SKIP, _DATA = range(5)


class WavReader:
    """Progressive WAV parser: feed any chunking of the file, get back the sample bytes.

    Handles headers split across chunks, chunks before/after `data` (LIST, fact, JUNK...),
    data sizes of 0 or 0xFFFFFFFF (read until the stream ends), and several WAV files sent back
    to back when each states its data size (the format must stay the same).
    """

    __slots__ = ("_buf", "_need", "_remaining", "_state", "spec")

    def __init__(self) -> None:
        self.spec: WavSpec | None = None
        self._buf = bytearray()
        self._state = _RIFF
        self._need = 0  # bytes of the current fmt chunk, or left to skip
        self._remaining: int | None = None  # data bytes left; None = until the end

    def feed(self, data: bytes) -> bytes:
        if self._state == _DATA and not self._buf:
            # The hot path: no header work pending, hand the caller's bytes straight back.
            if self._remaining is None:
                return data
            if len(data) < self._remaining:
                self._remaining -= len(data)
                return data
        self._buf += data
        out: list[bytes] = []
        self._parse(out)
        return out[0] if len(out) == 1 else b"".join(out)

    def _parse(self, out: list[bytes]) -> None:
        buf = self._buf
        pos = 0
        while True:
            avail = len(buf) - pos
            state = self._state
            if state == _DATA:
                if self._remaining is None:
                    take = avail
                else:
                    take = min(avail, self._remaining)
                    self._remaining -= take
                if take:
                    out.append(bytes(buf[pos : pos + take]))
                    pos += take
                if self._remaining == 0:
                    self._state = _CHUNK
                    continue
                break
            if state == _RIFF:
                if avail < 12:
                    break
                if buf[pos : pos + 4] not in (b"RIFF", b"RF64") or buf[pos + 8 : pos + 12] != b"WAVE":
                    raise AudioError("not a WAV stream (missing RIFF/WAVE header)")
                pos += 12
                self._state = _CHUNK
            elif state == _CHUNK:
                if avail >= 4 and buf[pos : pos + 4] == b"RIFF":
                    self._state = _RIFF  # another WAV file follows the previous one
                    continue
                if avail < 8:
                    break
                chunk_id = bytes(buf[pos : pos + 4])
                (size,) = struct.unpack_from("<I", buf, pos + 4)
                pos += 8
                if chunk_id == b"fmt ":
                    if size > _MAX_FMT_BYTES:
                        raise AudioError("corrupt WAV header: fmt chunk too large")
                    self._need = size + (size & 1)
                    self._state = _FMT
                elif chunk_id == b"data":
                    if self.spec is None:
                        raise AudioError("corrupt WAV stream: data chunk before fmt chunk")
                    # 0 and 0xFFFFFFFF are what streaming writers put when the size is unknown.
                    self._remaining = None if size in (0, UNKNOWN_SIZE) else size
                    self._state = _DATA
                else:
                    self._need = size + (size & 1)
                    self._state = _SKIP
            elif state == _FMT:
                if avail < self._need:
                    break
                spec = parse_fmt(buf[pos : pos + self._need])
                if self.spec is not None and spec != self.spec:
                    raise AudioError("WAV format changed in the middle of the stream")
                self.spec = spec
                pos += self._need
                self._state = _CHUNK
            else:  # _SKIP
                take = min(avail, self._need)
                pos += take
                self._need -= take
                if self._need:
                    break
                self._state = _CHUNK
        del buf[:pos]
