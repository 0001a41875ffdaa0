"""Recognise an audio stream from its first bytes.

`sniff` also says whether more bytes could change the answer (`complete`) and whether the
`AudioFormat` describes the bytes exactly (`exact`): a 24-bit WAV is reported as WAV but must not
be passed through as if it were 16-bit.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from .base import AudioError
from .formats import (
    AAC,
    ALAW,
    FLAC,
    MP3,
    MP4,
    MULAW,
    OGG,
    OPUS,
    PCM_F32LE,
    PCM_S16LE,
    RAW,
    VORBIS,
    WAV,
    WEBM,
    AudioFormat,
)
from .wav import parse_fmt
from .webm import WebmReader

SNIFF_LIMIT = 64 * 1024  # give up waiting for a conclusive answer after this many bytes
MIN_SNIFF_BYTES = 12

# Sampling-frequency index of ADTS / MPEG-4 audio (ISO 14496-3, 1.6.3.4).
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# MPEG audio layer III (ISO 11172-3 / 13818-3) header fields.
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_KBPS_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_KBPS_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_WEBM_CODECS = {"A_OPUS": OPUS, "A_VORBIS": VORBIS, "A_FLAC": FLAC, "A_MPEG/L3": MP3}


@dataclass(frozen=True, slots=True)
class Sniffed:
    format: AudioFormat | None
    complete: bool  # True when more bytes would not change the answer
    exact: bool = True  # False when `format` only approximates the stream (never pass it through)


_MORE = Sniffed(None, False)
_UNKNOWN = Sniffed(None, True)


def _fmt(encoding: str, container: str, rate: int, channels: int, bit_rate: int | None = None) -> AudioFormat | None:
    try:
        return AudioFormat(encoding, container, rate, channels, bit_rate)
    except ValueError:
        return None  # rates or channel counts outside what we support: not ours to handle


def sniff(head: bytes | bytearray, *, final: bool = False) -> Sniffed:
    """What `head` (the first bytes of a stream) is. With `final`, no more bytes will come."""
    if len(head) < MIN_SNIFF_BYTES and not final:
        return _MORE
    head = bytes(head)
    for check in (_sniff_wav, _sniff_ogg, _sniff_flac, _sniff_webm, _sniff_mp4, _sniff_mpeg):
        found = check(head)
        if found is not None:
            if not found.complete and (final or len(head) >= SNIFF_LIMIT):
                return Sniffed(found.format, True, found.exact)
            return found
    return _UNKNOWN


def sniff_format(head: bytes) -> AudioFormat | None:
    """The format of a stream starting with `head`, or None if no container/codec is recognised.

    When `head` is too short to read every parameter (an Ogg page cut before its first packet,
    an MP4 whose index is at the end), this is the container's usual format: use `sniff` to
    know whether the answer is exact.
    """
    return sniff(head, final=True).format


def _sniff_wav(head: bytes) -> Sniffed | None:
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt ":
            if pos + 8 + size > len(head):
                break
            try:
                spec = parse_fmt(head[pos + 8 : pos + 8 + size])
            except AudioError:
                # Let the WAV reader report precisely what is unsupported.
                return Sniffed(AudioFormat(PCM_S16LE, WAV), True, exact=False)
            encoding = {PCM_S16LE: PCM_S16LE, PCM_F32LE: PCM_F32LE, MULAW: MULAW, ALAW: ALAW}.get(spec.kind)
            fmt = _fmt(encoding or PCM_S16LE, WAV, spec.sample_rate, spec.channels)
            return Sniffed(fmt, True, exact=encoding is not None)
        if chunk == b"data":
            break
        pos += 8 + size + (size & 1)
    return Sniffed(AudioFormat(PCM_S16LE, WAV), False, exact=False)


def _sniff_ogg(head: bytes) -> Sniffed | None:
    if head[:4] != b"OggS":
        return None
    if len(head) < 27:
        return Sniffed(AudioFormat(OPUS, OGG, 48000), False, exact=False)
    nsegs = head[26]
    first = head[27 + nsegs : 27 + nsegs + 64]
    if len(head) < 27 + nsegs or len(first) < 19:
        return Sniffed(AudioFormat(OPUS, OGG, 48000), False, exact=False)
    if first.startswith(b"OpusHead"):
        # Decoders always output Opus at 48 kHz; the header's rate is only the encoder's input.
        return Sniffed(_fmt(OPUS, OGG, 48000, first[9]), True)
    if first.startswith(b"\x01vorbis") and len(first) >= 16:
        channels, rate = first[11], struct.unpack_from("<I", first, 12)[0]
        return Sniffed(_fmt(VORBIS, OGG, rate, channels), True)
    if first.startswith(b"\x7fFLAC") and len(first) >= 51:
        rate, channels = _streaminfo_rate_channels(first[17:51])
        return Sniffed(_fmt(FLAC, OGG, rate, channels), True)
    # Another first stream (a skeleton, video): the Ogg reader will look for the audio.
    return Sniffed(AudioFormat(OPUS, OGG, 48000), True, exact=False)


def _streaminfo_rate_channels(info: bytes) -> tuple[int, int]:
    rate = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
    channels = ((info[12] >> 1) & 0x07) + 1
    return rate, channels


def _sniff_flac(head: bytes) -> Sniffed | None:
    if head[:4] != b"fLaC":
        return None
    if len(head) < 42:
        return Sniffed(AudioFormat(FLAC, RAW), False, exact=False)
    if head[4] & 0x7F != 0:
        return Sniffed(AudioFormat(FLAC, RAW), True, exact=False)
    rate, channels = _streaminfo_rate_channels(head[8:42])
    return Sniffed(_fmt(FLAC, RAW, rate, channels), True)


def _sniff_webm(head: bytes) -> Sniffed | None:
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return None
    reader = WebmReader()
    try:
        reader.feed(head)
    except AudioError:
        return Sniffed(AudioFormat(OPUS, WEBM, 48000), True, exact=False)
    track = reader.audio_track()
    # Track fields come in any order; wait for the Audio element unless the media already started.
    known = track is not None and track.codec_id and track.channels and track.sample_rate
    if track is None or not known:
        if not reader.clusters_seen:
            return Sniffed(AudioFormat(OPUS, WEBM, 48000), False, exact=False)
        if track is None or not track.codec_id:
            return Sniffed(AudioFormat(OPUS, WEBM, 48000), True, exact=False)
    encoding = _WEBM_CODECS.get(track.codec_id, AAC if track.codec_id.startswith("A_AAC") else None)
    if encoding is None:  # PCM in Matroska and rarer codecs: the WebM reader decides
        return Sniffed(AudioFormat(OPUS, WEBM, 48000), True, exact=False)
    rate = 48000 if encoding == OPUS else int(track.sample_rate) or 48000
    return Sniffed(_fmt(encoding, WEBM, rate, track.channels or 1), True)


def _sniff_mp4(head: bytes) -> Sniffed | None:
    if head[4:8] != b"ftyp":
        return None
    at = head.find(b"mp4a")
    if at >= 4 and at + 32 <= len(head):
        # AudioSampleEntry: 6 reserved, data ref (2), 8 reserved, channels (2), bits (2), 4, rate 16.16
        channels = struct.unpack_from(">H", head, at + 20)[0]
        rate = struct.unpack_from(">I", head, at + 28)[0] >> 16
        fmt = _fmt(AAC, MP4, rate, channels)
        if fmt is not None:
            return Sniffed(fmt, True)
    # The index may sit at the end of the file; the MP4 reader finds the real parameters.
    return Sniffed(AudioFormat(AAC, MP4, 44100), True, exact=False)


def _id3_end(head: bytes) -> int:
    if head[:3] != b"ID3" or len(head) < 10 or any(b >= 0x80 for b in head[6:10]):
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _mp3_header(head: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(rate, channels, bit_rate, frame_length) of a layer III frame header at pos."""
    if pos + 4 > len(head) or head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = head[pos + 1], head[pos + 2], head[pos + 3]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    rate_index, kbps_index = (b2 >> 2) & 3, b2 >> 4
    if version == 1 or layer != 1 or rate_index == 3 or kbps_index in (0, 15):
        return None
    rate = _MPEG_RATES[version][rate_index]
    kbps = (_MP3_KBPS_V1 if version == 3 else _MP3_KBPS_V2)[kbps_index]
    per_frame = 144 if version == 3 else 72
    length = per_frame * kbps * 1000 // rate + ((b2 >> 1) & 1)
    return rate, 1 if b3 >> 6 == 3 else 2, kbps * 1000, length


def _adts_header(head: bytes, pos: int) -> tuple[int, int, int] | None:
    """(rate, channels, frame_length) of an ADTS header at pos."""
    if pos + 7 > len(head) or head[pos] != 0xFF or head[pos + 1] & 0xF6 != 0xF0:
        return None
    rate_index = (head[pos + 2] >> 2) & 0x0F
    if rate_index >= len(_ADTS_RATES):
        return None
    channels = ((head[pos + 2] & 1) << 2) | (head[pos + 3] >> 6)
    length = ((head[pos + 3] & 3) << 11) | (head[pos + 4] << 3) | (head[pos + 5] >> 5)
    if length < 7:
        return None
    return _ADTS_RATES[rate_index], channels or 2, length


def _sniff_mpeg(head: bytes) -> Sniffed | None:
    """mp3 or ADTS AAC; without an ID3 tag, a second frame header must follow the first."""
    start = _id3_end(head)
    if start:
        if start + 4 > len(head):
            return Sniffed(AudioFormat(MP3, RAW, 44100), False, exact=False)
        # Tagged files are mp3 (or occasionally AAC); one header after the tag is proof enough.
        mp3 = _mp3_header(head, start)
        if mp3 is not None:
            return Sniffed(_fmt(MP3, RAW, mp3[0], mp3[1], mp3[2]), True)
        adts = _adts_header(head, start)
        if adts is not None:
            return Sniffed(_fmt(AAC, RAW, adts[0], adts[1]), True)
        return Sniffed(AudioFormat(MP3, RAW, 44100), True, exact=False)
    mp3 = _mp3_header(head, 0)
    if mp3 is not None:
        fmt = _fmt(MP3, RAW, mp3[0], mp3[1], mp3[2])
        return _confirm(head, mp3[3], fmt, lambda pos: _mp3_header(head, pos) is not None)
    adts = _adts_header(head, 0)
    if adts is not None:
        fmt = _fmt(AAC, RAW, adts[0], adts[1])
        return _confirm(head, adts[2], fmt, lambda pos: _adts_header(head, pos) is not None)
    return None


def _confirm(head: bytes, length: int, fmt: AudioFormat | None, header_at: Callable[[int], bool]) -> Sniffed | None:
    if len(head) < length + 4:
        return Sniffed(fmt, False)
    return Sniffed(fmt, True) if header_at(length) else None
