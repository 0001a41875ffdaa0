"""Container sources (see `decoders.py` for the contract): FLAC cut at its sync codes, Ogg and WebM framed
by our own readers (`ogg.py`, `webm.py`) feeding PyAV decoders, and MP4/M4A buffered until flush."""

from __future__ import annotations

import io
import struct

from .base import AudioError
from .decoders import (
    Block,
    PacketDecoder,
    PcmSource,
    frame_to_array,
)
from .formats import PCM_F32LE, PCM_S16LE
from .libav import av
from .ogg import OggPacket, OggReader
from .pcm import PCM_F64LE, PCM_S24LE, PCM_S32LE
from .webm import TrackInfo, WebmReader

MP4_MAX_BYTES = 64 * 1024 * 1024
_FLAC_MAX_FRAME_BYTES = 1024 * 1024  # the format's own limit is 16 MiB; real frames are < 64 KiB


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


class _PcmPackets(PcmSource):
    """PCM frames inside a container, with the same interface as `PacketDecoder`."""

    __slots__ = ()
    decode = PcmSource.feed


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
