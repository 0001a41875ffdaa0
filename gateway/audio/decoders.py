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

import io
import struct
from typing import Protocol, cast

import av
import numpy as np

from .base import AudioError
from .formats import PCM_F32LE, PCM_S16LE
from .ogg import OggPacket, OggReader
from .pcm import PCM_F64LE, PCM_S24LE, PCM_S32LE, PcmDecoder
from .wav import WavReader
from .webm import TrackInfo, WebmReader

Block = tuple[np.ndarray, int]

MP4_MAX_BYTES = 64 * 1024 * 1024
_FLAC_MAX_FRAME_BYTES = 1024 * 1024  # the format's own limit is 16 MiB; real frames are < 64 KiB
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


class FlacSource:
    """Native FLAC ("fLaC", metadata blocks, frames), framed by sync code + CRC-checked decode."""

    __slots__ = ("_buf", "_decoder", "_meta_skip", "_scan", "_state", "_streaminfo", "_sync")

    _MAGIC, _META, _FRAMES = range(3)

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = self._MAGIC
        self._meta_skip = 0
        self._streaminfo: bytes | None = None
        self._decoder: PacketDecoder | None = None
        self._sync: bytes | None = None
        self._scan = 2

    def feed(self, data: bytes) -> list[Block]:
        self._buf += data
        if self._state != self._FRAMES:
            self._read_metadata()
        if self._state != self._FRAMES:
            return []
        return self._split(final=False)

    def flush(self) -> list[Block]:
        if self._state != self._FRAMES:
            return []
        return self._split(final=True)

    def _read_metadata(self) -> None:
        buf = self._buf
        pos = 0
        if self._state == self._MAGIC:
            if len(buf) < 4:
                return
            if buf[:4] == b"fLaC":
                pos = 4
                self._state = self._META
            elif buf[0] == 0xFF and buf[1] in (0xF8, 0xF9):
                self._start_frames()  # frames without the file header (a cut live stream)
                return
            else:
                raise AudioError("not a FLAC stream")
        while self._state == self._META:
            if self._meta_skip:
                take = min(self._meta_skip, len(buf) - pos)
                pos += take
                self._meta_skip -= take
                if self._meta_skip:
                    break
            if len(buf) - pos < 4:
                break
            last, kind = buf[pos] & 0x80, buf[pos] & 0x7F
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if kind == 127:
                raise AudioError("corrupt FLAC metadata")
            if kind == 0:
                if length != 34:
                    raise AudioError("corrupt FLAC metadata")
                if len(buf) - pos < 4 + length:
                    break
                self._streaminfo = bytes(buf[pos + 4 : pos + 4 + length])
                pos += 4 + length
            else:
                pos += 4
                self._meta_skip = length  # tags, seek table, pictures: not needed to decode
            if last:
                self._state = self._FRAMES
                if self._meta_skip:
                    take = min(self._meta_skip, len(buf) - pos)
                    pos += take
                    self._meta_skip -= take
        del buf[:pos]
        if self._state == self._FRAMES:
            self._start_frames()

    def _start_frames(self) -> None:
        self._state = self._FRAMES
        # `explode` turns a CRC mismatch into an error, which is what rejects false syncs.
        self._decoder = PacketDecoder(
            "flac", "flac", extradata=self._streaminfo, options={"err_detect": "crccheck+explode"}
        )

    def _split(self, final: bool) -> list[Block]:
        decoder = self._decoder
        assert decoder is not None
        buf = self._buf
        blocks: list[Block] = []
        if self._meta_skip:
            take = min(self._meta_skip, len(buf))
            del buf[:take]
            self._meta_skip -= take
        if self._sync is None:
            if len(buf) < 2:
                return blocks
            if buf[0] != 0xFF or buf[1] not in (0xF8, 0xF9):
                raise AudioError("corrupt FLAC stream (no frame sync)")
            self._sync = bytes(buf[:2])
        scan = self._scan
        while True:
            cut = buf.find(self._sync, scan)
            if cut < 0:
                break
            got = decoder.try_decode(bytes(buf[:cut]))
            if got is None:
                scan = cut + 1  # a sync pattern inside frame data: the frame goes on
                continue
            blocks += got
            del buf[:cut]
            scan = 2
        if len(buf) > _FLAC_MAX_FRAME_BYTES:
            raise AudioError("corrupt FLAC stream")
        self._scan = max(2, len(buf) - 1)
        if final and buf:
            # The last frame has no following sync to end it. If it does not decode it is still
            # incomplete: keep it, the stream may continue after a mid-stream flush.
            got = decoder.try_decode(bytes(buf))
            if got is not None:
                blocks += got
                buf.clear()
                self._scan = 2
        return blocks


class _OggStream:
    """One logical Ogg stream: its header packets, then audio packets for a PyAV decoder."""

    __slots__ = ("_codec", "_headers", "_headers_left", "_opus_head", "_streaminfo", "decoder")

    def __init__(self, first: bytes) -> None:
        self.decoder: PacketDecoder | None = None
        self._headers: list[bytes] = [first]
        self._opus_head = b""
        self._streaminfo = b""
        if first.startswith(b"OpusHead"):
            self._codec = "opus"
            self._opus_head = first
            self._headers_left = 1  # OpusTags
        elif first.startswith(b"\x01vorbis"):
            self._codec = "vorbis"
            self._headers_left = 2  # comment, setup
        elif first.startswith(b"\x7fFLAC") and len(first) >= 51:
            self._codec = "flac"
            self._streaminfo = first[17:51]
            count = int.from_bytes(first[7:9], "big")
            self._headers_left = count if count else -1  # 0 = "unknown": until the first frame
        else:
            raise ValueError("not an audio stream we decode")

    def packet(self, data: bytes) -> list[Block]:
        if self.decoder is None:
            if self._headers_left > 0 or (self._headers_left < 0 and not data.startswith(b"\xff")):
                self._headers.append(data)
                if self._headers_left > 0:
                    self._headers_left -= 1
                    if not self._headers_left:
                        self._open()
                return []
            self._open()
        assert self.decoder is not None
        return self.decoder.decode(data)

    def _open(self) -> None:
        if self._codec == "opus":
            pre_skip = struct.unpack_from("<H", self._opus_head, 10)[0] if len(self._opus_head) >= 12 else 0
            self.decoder = PacketDecoder("opus", "opus", extradata=self._opus_head, skip_samples=pre_skip)
        elif self._codec == "vorbis":
            # FFmpeg's "two-byte length prefix" form of Vorbis extradata.
            extradata = b"".join(len(h).to_bytes(2, "big") + h for h in self._headers[:3])
            self.decoder = PacketDecoder("vorbis", "vorbis", extradata=extradata)
        else:
            self.decoder = PacketDecoder("flac", "flac", extradata=self._streaminfo)


class OggSource:
    """Ogg Opus, Vorbis or FLAC. Decodes the first audio stream; follows chained streams."""

    __slots__ = ("_bos_seen", "_ended", "_reader", "_serial", "_stream")

    def __init__(self) -> None:
        self._reader = OggReader()
        self._stream: _OggStream | None = None
        self._serial = -1
        self._ended = False
        self._bos_seen = False

    def feed(self, data: bytes) -> list[Block]:
        blocks: list[Block] = []
        for packet in self._reader.feed(data):
            self._packet(packet, blocks)
        return blocks

    def _packet(self, packet: OggPacket, blocks: list[Block]) -> None:
        if packet.bos:
            self._bos_seen = True
            if self._stream is None or self._ended:
                try:
                    stream = _OggStream(packet.data)
                except ValueError:
                    return  # video, skeleton or a codec we do not know: ignore that stream
                self._stream, self._serial, self._ended = stream, packet.serial, False
            return
        if self._stream is None or packet.serial != self._serial or self._ended:
            return
        blocks += self._stream.packet(packet.data)
        self._ended = packet.eos  # a chained stream may follow with its own headers

    def flush(self) -> list[Block]:
        if self._stream is None and self._bos_seen:
            raise AudioError("no Opus, Vorbis or FLAC audio found in the Ogg stream")
        return []


class _PcmPackets:
    """PCM frames inside a container, with the same interface as `PacketDecoder`."""

    __slots__ = ("_decoder", "_rate")

    def __init__(self, kind: str, rate: int, channels: int) -> None:
        self._decoder = PcmDecoder(kind, channels)
        self._rate = rate

    def decode(self, data: bytes) -> list[Block]:
        arr = self._decoder.decode(data)
        return [] if arr is None else [(arr, self._rate)]


def _webm_decoder(track: TrackInfo) -> PacketDecoder | _PcmPackets:
    codec_id = track.codec_id
    private = track.codec_private or None
    if codec_id == "A_OPUS":
        pre_skip = struct.unpack_from("<H", private, 10)[0] if private and len(private) >= 12 else 0
        return PacketDecoder("opus", "opus", extradata=private, skip_samples=pre_skip)
    if codec_id == "A_VORBIS":
        return PacketDecoder("vorbis", "vorbis", extradata=private)
    if codec_id == "A_FLAC":
        return PacketDecoder("flac", "flac", extradata=private)
    if codec_id.startswith("A_AAC"):
        return PacketDecoder("aac", "aac", extradata=private)
    if codec_id == "A_MPEG/L3":
        return PacketDecoder("mp3float", "mp3")
    rate = int(track.sample_rate) or 48000
    if codec_id == "A_PCM/INT/LIT" and track.bit_depth in (16, 24, 32):
        kind = {16: PCM_S16LE, 24: PCM_S24LE, 32: PCM_S32LE}[track.bit_depth]
        return _PcmPackets(kind, rate, track.channels or 1)
    if codec_id == "A_PCM/FLOAT/IEEE" and track.bit_depth in (32, 64):
        return _PcmPackets(PCM_F32LE if track.bit_depth == 32 else PCM_F64LE, rate, track.channels or 1)
    raise AudioError(f"unsupported WebM audio codec {codec_id or 'unknown'}")


class WebmSource:
    """WebM/Matroska: the first audio track, decoded frame by frame as clusters arrive."""

    __slots__ = ("_decoder", "_reader", "_track")

    def __init__(self) -> None:
        self._reader = WebmReader()
        self._track = -1
        self._decoder: PacketDecoder | _PcmPackets | None = None

    def feed(self, data: bytes) -> list[Block]:
        blocks: list[Block] = []
        for number, frame in self._reader.feed(data):
            if self._decoder is None:
                track = self._reader.audio_track()
                if track is None:
                    raise AudioError("no audio track in the WebM stream")
                self._decoder = _webm_decoder(track)
                self._track = track.number
            if number == self._track:
                blocks += self._decoder.decode(frame)
        return blocks

    def flush(self) -> list[Block]:
        if self._decoder is None and self._reader.clusters_seen and self._reader.audio_track() is None:
            raise AudioError("no audio track in the WebM stream")
        return []


class Mp4Source:
    """MP4/M4A, buffered until flush (see the module docstring for why); flush ends the file."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Block]:
        self._buf += data
        if len(self._buf) > MP4_MAX_BYTES:
            raise AudioError(f"MP4 audio larger than {MP4_MAX_BYTES // (1024 * 1024)} MiB")
        return []

    def flush(self) -> list[Block]:
        if not self._buf:
            return []
        data, self._buf = bytes(self._buf), bytearray()
        try:
            with av.open(io.BytesIO(data), "r") as container:
                if not container.streams.audio:
                    raise AudioError("no audio track in the MP4 file")
                return [(frame_to_array(f), f.sample_rate) for f in container.decode(container.streams.audio[0])]
        except av.FFmpegError as exc:
            raise AudioError("corrupt or truncated MP4 audio") from exc
