"""Ogg page framing (RFC 3533): chunks of an Ogg stream in, complete codec packets out.

Why not FFmpeg's Ogg demuxer: it pulls bytes through a blocking read callback and treats "no more
bytes yet" as end of file, which cannot be undone, so it cannot follow a stream that is still
arriving. Ogg framing is tiny (a 27-byte page header and a lacing table), so we split pages here
and give each packet to the PyAV decoder. CRCs are not checked: a damaged page either breaks the
capture pattern (we raise) or fails in the codec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .base import AudioError

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seqno, crc, nsegs
_FLAG_CONTINUED = 0x01
_FLAG_BOS = 0x02
_FLAG_EOS = 0x04
MAX_PACKET_BYTES = 4 * 1024 * 1024  # far beyond any audio packet; bounds memory on garbage


@dataclass(frozen=True, slots=True)
class OggPacket:
    serial: int
    data: bytes
    bos: bool  # first packet of a logical stream (identifies the codec)
    eos: bool  # last packet of a logical stream


class OggReader:
    __slots__ = ("_buf", "_partial")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._partial: dict[int, bytearray] = {}  # serial -> packet continued on the next page

    def feed(self, data: bytes) -> list[OggPacket]:
        buf = self._buf
        buf += data
        packets: list[OggPacket] = []
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            capture, version, flags, _granule, serial, _seq, _crc, nsegs = _HEADER.unpack_from(buf, pos)
            if capture != b"OggS" or version != 0:
                raise AudioError("corrupt Ogg stream (lost page sync)")
            lacing_at = pos + _HEADER.size
            if len(buf) < lacing_at + nsegs:
                break
            lacing = buf[lacing_at : lacing_at + nsegs]
            body_at = lacing_at + nsegs
            if len(buf) < body_at + sum(lacing):
                break
            self._split_page(buf, body_at, lacing, serial, flags, packets)
            pos = body_at + sum(lacing)
        del buf[:pos]
        return packets

    def _split_page(
        self,
        buf: bytearray,
        at: int,
        lacing: bytearray,
        serial: int,
        flags: int,
        packets: list[OggPacket],
    ) -> None:
        pending = self._partial.pop(serial, None)
        continued = bool(flags & _FLAG_CONTINUED)
        if pending is not None and not continued:
            pending = None  # the previous page promised a continuation that never came: drop it
        # A continuation with nothing to continue (we joined mid-stream): its tail is useless.
        orphan = continued and pending is None
        start = at
        first = True
        for seg in lacing:
            at += seg
            if seg == 255:
                continue
            piece = buf[start:at]
            start = at
            if orphan:
                orphan = False
                continue
            if pending is not None:
                pending += piece
                piece, pending = pending, None
            packets.append(OggPacket(serial, bytes(piece), bool(flags & _FLAG_BOS) and first, False))
            first = False
        if start < at and not orphan:
            rest = buf[start:at]
            if pending is not None:
                pending += rest
            else:
                pending = bytearray(rest)
            if len(pending) > MAX_PACKET_BYTES:
                raise AudioError("corrupt Ogg stream (packet too large)")
            self._partial[serial] = pending
        if flags & _FLAG_EOS and packets and packets[-1].serial == serial:
            last = packets[-1]
            packets[-1] = OggPacket(serial, last.data, last.bos, True)
