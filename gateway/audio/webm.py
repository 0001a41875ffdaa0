"""Just enough Matroska/WebM (EBML) to pull audio frames out of a stream that is still arriving.

Same reason as `ogg.py`: FFmpeg's demuxers read through a blocking callback and cannot wait for
bytes that have not arrived. Browsers (MediaRecorder) send WebM with unknown-size Segment and
Cluster elements, which suits a flat walk: we step *into* the few master elements we care about,
read the small leaves we need, and skip everything else by its size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import AudioError

EBML_HEADER = 0x1A45DFA3
SEGMENT = 0x18538067
CLUSTER = 0x1F43B675
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_TYPE = 0x83
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
AUDIO = 0xE1
SAMPLING_FREQUENCY = 0xB5
CHANNELS = 0x9F
BIT_DEPTH = 0x6264
SIMPLE_BLOCK = 0xA3
BLOCK_GROUP = 0xA0
BLOCK = 0xA1

TRACK_TYPE_AUDIO = 2

_ENTER = frozenset({SEGMENT, CLUSTER, TRACKS, TRACK_ENTRY, AUDIO, BLOCK_GROUP})
_TRACK_LEAVES = frozenset({TRACK_NUMBER, TRACK_TYPE, CODEC_ID, CODEC_PRIVATE, SAMPLING_FREQUENCY, CHANNELS, BIT_DEPTH})
_BLOCKS = frozenset({SIMPLE_BLOCK, BLOCK})
_MAX_LEAF_BYTES = 16 * 1024 * 1024  # a block or CodecPrivate larger than this is garbage
_UNKNOWN = -1


@dataclass(slots=True)
class TrackInfo:
    number: int = 0
    type: int = 0
    codec_id: str = ""
    codec_private: bytes = b""
    sample_rate: float = 0.0
    channels: int = 0  # 0 until the Audio element says (Matroska's default is 1)
    bit_depth: int = 0


def _read_vint(buf: bytearray, pos: int, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of the EBML variable-size integer at pos; None if incomplete."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first == 0:
        raise AudioError("corrupt WebM stream (invalid element header)")
    length = 9 - first.bit_length()
    if pos + length > len(buf):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for i in range(1, length):
        value = (value << 8) | buf[pos + i]
    if not keep_marker and value == (1 << (7 * length)) - 1:
        value = _UNKNOWN  # all ones: "size unknown" (live streams)
    return value, length


class WebmReader:
    """Feed WebM bytes, get `(track_number, frame)` pairs; `tracks` fills in as headers arrive."""

    __slots__ = ("_buf", "_current", "_seen_header", "_skip", "clusters_seen", "tracks")

    def __init__(self) -> None:
        self.tracks: dict[int, TrackInfo] = {}
        self.clusters_seen = False
        self._buf = bytearray()
        self._skip = 0
        self._current: TrackInfo | None = None
        self._seen_header = False

    def audio_track(self) -> TrackInfo | None:
        for track in self.tracks.values():
            if track.type == TRACK_TYPE_AUDIO:
                return track
        return None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        while True:
            if self._skip:
                take = min(self._skip, len(buf) - pos)
                pos += take
                self._skip -= take
                if self._skip:
                    break
            head = _read_vint(buf, pos, keep_marker=True)
            if head is None:
                break
            element, id_len = head
            if id_len > 4:
                raise AudioError("corrupt WebM stream (invalid element id)")
            size_vint = _read_vint(buf, pos + id_len, keep_marker=False)
            if size_vint is None:
                break
            size, size_len = size_vint
            if not self._seen_header:
                if element != EBML_HEADER:
                    raise AudioError("not a WebM/Matroska stream")
                self._seen_header = True
            body = pos + id_len + size_len
            if element in _ENTER:
                pos = body
                if element == TRACK_ENTRY:
                    self._current = TrackInfo()
                elif element == CLUSTER:
                    self.clusters_seen = True
                continue
            if size == _UNKNOWN:
                raise AudioError("corrupt WebM stream (unknown-size element)")
            if element in _BLOCKS or element in _TRACK_LEAVES:
                if size > _MAX_LEAF_BYTES:
                    raise AudioError("corrupt WebM stream (element too large)")
                if len(buf) < body + size:
                    break
                payload = bytes(buf[body : body + size])
                pos = body + size
                if element in _BLOCKS:
                    frames.extend(self._block_frames(payload))
                else:
                    self._track_leaf(element, payload)
                continue
            pos = body
            self._skip = size
        del buf[:pos]
        return frames

    def _track_leaf(self, element: int, payload: bytes) -> None:
        track = self._current
        if track is None:
            return
        if element == TRACK_NUMBER:
            track.number = int.from_bytes(payload, "big")
            self.tracks[track.number] = track
        elif element == TRACK_TYPE:
            track.type = int.from_bytes(payload, "big")
        elif element == CODEC_ID:
            track.codec_id = payload.rstrip(b"\x00").decode("ascii", "replace")
        elif element == CODEC_PRIVATE:
            track.codec_private = payload
        elif element == SAMPLING_FREQUENCY:
            if len(payload) == 4:
                track.sample_rate = struct.unpack(">f", payload)[0]
            elif len(payload) == 8:
                track.sample_rate = struct.unpack(">d", payload)[0]
        elif element == CHANNELS:
            track.channels = int.from_bytes(payload, "big")
        elif element == BIT_DEPTH:
            track.bit_depth = int.from_bytes(payload, "big")

    def _block_frames(self, block: bytes) -> list[tuple[int, bytes]]:
        buf = bytearray(block[:8])
        num = _read_vint(buf, 0, keep_marker=False)
        if num is None or len(block) < num[1] + 3:
            raise AudioError("corrupt WebM stream (short block)")
        track, n = num
        flags = block[n + 2]
        pos = n + 3
        lacing = (flags >> 1) & 3
        if lacing == 0:
            return [(track, block[pos:])]
        if pos >= len(block):
            raise AudioError("corrupt WebM stream (short block)")
        count = block[pos] + 1
        pos += 1
        sizes = self._lace_sizes(block, pos, count, lacing)
        pos = sizes.pop()
        out: list[tuple[int, bytes]] = []
        for size in sizes:
            out.append((track, block[pos : pos + size]))
            pos += size
        if pos > len(block):
            raise AudioError("corrupt WebM stream (bad lacing)")
        out.append((track, block[pos:]))
        return out

    @staticmethod
    def _lace_sizes(block: bytes, pos: int, count: int, lacing: int) -> list[int]:
        """Sizes of all frames but the last, followed by the offset where frame data starts."""
        sizes: list[int] = []
        if lacing == 2:  # fixed-size lacing
            each, extra = divmod(len(block) - pos, count)
            if extra:
                raise AudioError("corrupt WebM stream (bad lacing)")
            return [each] * (count - 1) + [pos]
        if lacing == 1:  # Xiph lacing
            for _ in range(count - 1):
                size = 0
                while True:
                    if pos >= len(block):
                        raise AudioError("corrupt WebM stream (bad lacing)")
                    byte = block[pos]
                    pos += 1
                    size += byte
                    if byte != 255:
                        break
                sizes.append(size)
            return [*sizes, pos]
        # EBML lacing: first size as a vint, then signed differences.
        view = bytearray(block)
        prev = 0
        for i in range(count - 1):
            got = _read_vint(view, pos, keep_marker=False)
            if got is None or got[0] == _UNKNOWN:
                raise AudioError("corrupt WebM stream (bad lacing)")
            value, length = got
            if i:
                value -= (1 << (7 * length - 1)) - 1  # signed: subtract the bias
                value += prev
            pos += length
            if value < 0:
                raise AudioError("corrupt WebM stream (bad lacing)")
            sizes.append(value)
            prev = value
        return [*sizes, pos]
