"""Sources: one per input kind, turning chunks of encoded bytes into sample blocks.

Every source has `feed(data) -> list[Block]` and `flush() -> list[Block]`, where a block is a
`(frames, channels)` array and its sample rate. `flush` returns what is decodable now and keeps the
framing state, because the stream may continue after a mid-stream flush (Deepgram `Finalize`).
None of the decoders used here holds finished frames back (their drain yields nothing), and the
mp3/ADTS parsers release a frame as soon as its last byte arrives, so there is nothing to drain:
draining a parser mid-stream would even emit the partial frame as a (corrupt) packet.

How each input is framed while it streams:

- raw PCM, WAV: numpy only (`pcm.PcmDecoder`), header parsed progressively (`wav.WavReader`).
- mp3, AAC/ADTS: FFmpeg's own parsers (`CodecContext.parse`) split the elementary stream.
- FLAC: FFmpeg's FLAC parser holds ~10 frames back and, through PyAV's parse loop, can stall
  until flush when chunks hold several frames, so we cut frames at the sync code and let the
  decoder's CRC check (with `explode`) reject false syncs inside frame data.
- Ogg, WebM: our page/EBML framing (`ogg.py`, `webm.py`) feeds packets to PyAV decoders.
- MP4/M4A: buffered until flush, then demuxed by FFmpeg. The index (`moov`) may come after the
  media data, and sample boundaries are unknown without it, so there is nothing safe to decode
  earlier. Clients send MP4 as whole files, so this costs no latency in practice.
"""

from __future__ import annotations

from typing import Protocol, cast

import numpy as np

from .base import AudioError
from .libav import av
from .pcm import PcmDecoder
from .wav import WavReader

Block = tuple[np.ndarray, int]

_MAX_CONSECUTIVE_ERRORS = 16
_MAX_ERRORS_BEFORE_FIRST_FRAME = 4
_MIN_BYTES_FOR_A_FRAME = 4096  # more than any mp3/AAC frame: by then one must have decoded

_INV_S32 = np.float32(1.0 / 2147483648.0)


class Source(Protocol):
    def feed(self, data: bytes) -> list[Block]: ...

    def flush(self) -> list[Block]: ...


def frame_to_array(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as an interleaved `(frames, channels)` int16 or float32 array."""
    channels = frame.layout.nb_channels
    arr: np.ndarray = frame.to_ndarray()
    if frame.format.is_planar:
        arr = arr.reshape(-1, 1) if channels == 1 else np.ascontiguousarray(arr.T)
    else:
        arr = arr.reshape(-1, channels)
    dtype = arr.dtype
    if dtype == np.int16 or dtype == np.float32:
        return arr
    if dtype == np.int32:
        return np.multiply(arr, _INV_S32, dtype=np.float32)
    if dtype == np.uint8:
        return (arr.astype(np.float32) - np.float32(128.0)) * np.float32(1.0 / 128.0)
    return arr.astype(np.float32)


class PacketDecoder:
    """A PyAV decoder fed one packet at a time.

    A damaged packet in a live stream is skipped (a glitch beats a dropped call); a stream that
    keeps failing, or fails before its first good frame, is reported as corrupt.
    """

    __slots__ = ("_consecutive_errors", "_ctx", "_errors", "_skip", "frames", "label")

    def __init__(
        self,
        codec: str,
        label: str,
        *,
        extradata: bytes | None = None,
        skip_samples: int = 0,
        options: dict[str, str] | None = None,
    ) -> None:
        try:
            self._ctx = cast(av.AudioCodecContext, av.CodecContext.create(codec, "r"))
            if extradata:
                self._ctx.extradata = extradata
            if options:
                self._ctx.options = options
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(f"cannot decode {label} audio") from exc
        self.label = label
        self.frames = 0
        self._errors = 0
        self._consecutive_errors = 0
        self._skip = skip_samples  # leading samples to drop (Opus pre-skip)

    @property
    def context(self) -> av.AudioCodecContext:
        return self._ctx

    def decode(self, packet: bytes | av.Packet) -> list[Block]:
        blocks = self.try_decode(packet)
        if blocks is None:
            self._errors += 1
            self._consecutive_errors += 1
            if self._consecutive_errors >= _MAX_CONSECUTIVE_ERRORS or (
                self.frames == 0 and self._errors >= _MAX_ERRORS_BEFORE_FIRST_FRAME
            ):
                raise AudioError(f"corrupt {self.label} audio")
            return []
        self._consecutive_errors = 0
        return blocks

    def try_decode(self, packet: bytes | av.Packet) -> list[Block] | None:
        """Blocks from one packet, or None if the codec rejected it."""
        if not isinstance(packet, av.Packet):
            packet = av.Packet(packet)
        try:
            frames = self._ctx.decode(packet)
        except av.FFmpegError:
            return None
        return self._blocks(frames)

    def _blocks(self, frames: list[av.AudioFrame]) -> list[Block]:
        blocks: list[Block] = []
        for frame in frames:
            self.frames += 1
            arr = frame_to_array(frame)
            if self._skip:
                drop = min(self._skip, arr.shape[0])
                self._skip -= drop
                arr = arr[drop:]
                if not arr.shape[0]:
                    continue
            blocks.append((arr, frame.sample_rate))
        return blocks


class PcmSource:
    __slots__ = ("_decoder", "_rate")

    def __init__(self, kind: str, sample_rate: int, channels: int) -> None:
        self._decoder = PcmDecoder(kind, channels)
        self._rate = sample_rate

    def feed(self, data: bytes) -> list[Block]:
        arr = self._decoder.decode(data)
        return [] if arr is None else [(arr, self._rate)]

    def flush(self) -> list[Block]:
        return []  # an incomplete trailing sample cannot be decoded; drop it


class WavSource:
    __slots__ = ("_decoder", "_rate", "_reader")

    def __init__(self) -> None:
        self._reader = WavReader()
        self._decoder: PcmDecoder | None = None
        self._rate = 0

    def feed(self, data: bytes) -> list[Block]:
        payload = self._reader.feed(data)
        if not payload:
            return []
        if self._decoder is None:
            spec = self._reader.spec
            assert spec is not None  # WavReader yields no data before the fmt chunk
            self._decoder = PcmDecoder(spec.kind, spec.channels)
            self._rate = spec.sample_rate
        arr = self._decoder.decode(payload)
        return [] if arr is None else [(arr, self._rate)]

    def flush(self) -> list[Block]:
        return []  # a truncated header simply produced no audio


class _Id3Skipper:
    """Drops an ID3v2 tag at the very start of an elementary stream (mp3/aac files carry one)."""

    __slots__ = ("_head", "_skip")

    def __init__(self) -> None:
        self._head: bytearray | None = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> bytes:
        head = self._head
        if head is not None:
            head += data
            if len(head) < 10 and b"ID3".startswith(bytes(head[:3])):
                return b""
            self._head = None
            data = bytes(head)
            if data[:3] == b"ID3" and all(b < 0x80 for b in data[6:10]):
                size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
                self._skip = 10 + size + (10 if data[5] & 0x10 else 0)
        if self._skip:
            take = min(self._skip, len(data))
            self._skip -= take
            data = data[take:]
        return data

    def flush(self) -> bytes:
        head, self._head = self._head, None
        return bytes(head) if head else b""


def _is_mp3_info_frame(packet: av.Packet) -> bool:
    # Encoders put a silent frame carrying "Xing"/"Info"/"VBRI" (seek table, gapless info)
    # first; players skip it, so do we, or every file would start with 26 ms of silence.
    head = bytes(packet)[:64]
    return b"Xing" in head or b"Info" in head or head[36:40] == b"VBRI"


class ParsedSource:
    """mp3 or ADTS AAC: FFmpeg's parser finds the frames, the decoder decodes them."""

    __slots__ = ("_decoder", "_fed", "_first", "_id3", "_is_mp3")

    def __init__(self, codec: str, label: str) -> None:
        self._decoder = PacketDecoder(codec, label)
        self._id3 = _Id3Skipper()
        self._first = True
        self._is_mp3 = codec.startswith("mp3")
        self._fed = 0

    def feed(self, data: bytes) -> list[Block]:
        data = self._id3.feed(data)
        if not data:
            return []
        self._fed += len(data)
        return self._decode(self._decoder.context.parse(data))

    def flush(self) -> list[Block]:
        blocks: list[Block] = []
        rest = self._id3.flush()
        if rest:
            self._fed += len(rest)
            blocks += self._decode(self._decoder.context.parse(rest))
        if not self._decoder.frames and self._fed >= _MIN_BYTES_FOR_A_FRAME:
            raise AudioError(f"no decodable {self._decoder.label} audio")
        return blocks

    def _decode(self, packets: list[av.Packet]) -> list[Block]:
        blocks: list[Block] = []
        for packet in packets:
            if self._first:
                self._first = False
                if self._is_mp3 and _is_mp3_info_frame(packet):
                    continue
            blocks += self._decoder.decode(packet)
        return blocks
