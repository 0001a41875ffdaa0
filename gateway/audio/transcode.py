"""Streaming transcoders: chunks in, chunks out, never the whole clip buffered.

CONTRACT (implemented by the audio layer; used by dialects, upstream and emulator):

    make_transcoder(src: AudioFormat | None, dst: AudioFormat) -> Transcoder

      src None means "unknown container": sniff it from the first bytes (wav, ogg, mp3, flac,
      webm, mp4/m4a, aac-adts). The result is a passthrough when dst.same_bytes_as(src).

    class Transcoder:
        def feed(self, data: bytes) -> bytes   # encoded output available now (may be b"")
        def flush(self) -> bytes               # drain codecs/resampler at end of stream
        passthrough: bool                      # True when bytes are forwarded untouched

    sniff_format(head: bytes) -> AudioFormat | None

Errors in the input (corrupt data, unsupported codec) raise `AudioError` with a message that can be
shown to a client.

Notes on the implementation:

- `flush()` drains the resampler and encoder. It may also be called mid-stream (Deepgram
  `Finalize`): `feed()` then carries on with the same input (container parsing state is kept);
  compressed output restarts with a fresh encoder (more mp3/ADTS frames; a new Ogg/WebM/FLAC
  stream). Raw PCM, G.711 and WAV output simply continue.
- Unsupported pairs fail at `make_transcoder` time (AudioError), not on the first chunk, except
  when the source is sniffed: then the error comes from the `feed` that completes the sniff.
- Everything streams except MP4/M4A input, which is buffered until `flush` (see `decoders.py`).
- Module map: `pcm` (numpy/soxr sample work), `g711`, `wav`, `ogg` and `webm` (framing),
  `decoders` and `encoders` (PyAV), `pipeline` (the two transcoder shapes), `sniff`.
"""

from __future__ import annotations

from .base import AudioError, Passthrough, Transcoder
from .containers import FlacSource, Mp4Source, OggSource, WebmSource
from .decoders import (
    ParsedSource,
    PcmSource,
    Source,
    WavSource,
)
from .encoders import EncoderSink, PcmSink, Sink, encoder_spec
from .formats import (
    AAC,
    FLAC,
    INPUT_ONLY_ENCODINGS,
    MP3,
    MP4,
    OGG,
    RAW,
    RAW_PCM_ENCODINGS,
    WAV,
    WEBM,
    AudioFormat,
)
from .pipeline import CodecTranscoder, PcmTranscoder
from .sniff import MIN_SNIFF_BYTES as _MIN_SNIFF_BYTES
from .sniff import SNIFF_LIMIT, sniff, sniff_format
from .wav import wav_header

__all__ = ["AudioError", "Transcoder", "make_transcoder", "sniff_format"]


def make_transcoder(src: AudioFormat | None, dst: AudioFormat) -> Transcoder:
    """A transcoder for one stream from `src` (None: sniff it) to `dst`."""
    if dst.encoding in INPUT_ONLY_ENCODINGS:
        raise AudioError(f"cannot produce {dst.encoding} audio")
    if src is None:
        _check_target(dst)
        return SniffingTranscoder(dst)
    return _make(src, dst, allow_passthrough=True)


def _make(src: AudioFormat, dst: AudioFormat, *, allow_passthrough: bool) -> Transcoder:
    if allow_passthrough and dst.same_bytes_as(src):
        return Passthrough()
    sink_is_pcm = dst.encoding in RAW_PCM_ENCODINGS and dst.container in (RAW, WAV)
    if sink_is_pcm and (src.is_raw_pcm or src.container == WAV):
        return PcmTranscoder(src, dst)
    source = _open_source(src)
    sink = _open_sink(dst)
    return CodecTranscoder(source, sink, dst, f"{src.encoding}/{src.container}")


def _check_target(dst: AudioFormat) -> None:
    if dst.encoding in RAW_PCM_ENCODINGS and dst.container in (RAW, WAV):
        return
    encoder_spec(dst.encoding, dst.container, dst.sample_rate)


def _open_source(src: AudioFormat) -> Source:
    encoding, container = src.encoding, src.container
    if container == WAV:
        return WavSource()  # whatever the declared encoding, the header says what the samples are
    if container == RAW:
        if encoding in RAW_PCM_ENCODINGS:
            return PcmSource(encoding, src.sample_rate, src.channels)
        if encoding == MP3:
            return ParsedSource("mp3float", "mp3")
        if encoding == AAC:
            return ParsedSource("aac", "aac")
        if encoding == FLAC:
            return FlacSource()
    elif container == OGG:
        return OggSource()
    elif container == WEBM:
        return WebmSource()
    elif container == MP4:
        return Mp4Source()
    raise AudioError(f"cannot read {encoding} audio from a {container} stream")


def _open_sink(dst: AudioFormat) -> Sink:
    if dst.encoding in RAW_PCM_ENCODINGS:
        if dst.container == RAW:
            return PcmSink(dst.encoding)
        if dst.container == WAV:
            return PcmSink(dst.encoding, wav_header(dst.encoding, dst.sample_rate, dst.channels))
    spec = encoder_spec(dst.encoding, dst.container, dst.sample_rate)
    return EncoderSink(spec, dst.sample_rate, dst.channels, dst.bit_rate)


class SniffingTranscoder(Transcoder):
    """Holds the first bytes until the container is recognised, then delegates.

    Holds at most `SNIFF_LIMIT` bytes, and usually one chunk: most formats are recognised from
    their first dozen bytes.
    """

    __slots__ = ("_dst", "_head", "_inner", "_source", "passthrough")

    def __init__(self, dst: AudioFormat) -> None:
        self.passthrough = False  # becomes the inner transcoder's once the format is known
        self._dst = dst
        self._head = bytearray()
        self._inner: Transcoder | None = None
        self._source: AudioFormat | None = None

    @property
    def source_format(self) -> AudioFormat | None:
        """What the stream was recognised as (None until enough bytes arrived)."""
        return self._source

    def feed(self, data: bytes) -> bytes:
        if self._inner is not None:
            return self._inner.feed(data)
        self._head += data
        found = sniff(self._head)
        if not found.complete and len(self._head) < SNIFF_LIMIT:
            return b""
        return self._start(found.format, found.exact).feed(self._take_head())

    def flush(self) -> bytes:
        if self._inner is None:
            if not self._head:
                return b""
            found = sniff(self._head, final=True)
            if found.format is None and len(self._head) < _MIN_SNIFF_BYTES:
                return b""  # too little to judge; a mid-stream flush may be followed by more
            out = self._start(found.format, found.exact).feed(self._take_head())
            return out + self._inner_flush()
        return self._inner_flush()

    def _inner_flush(self) -> bytes:
        assert self._inner is not None
        return self._inner.flush()

    def _take_head(self) -> bytes:
        head = bytes(self._head)
        self._head = bytearray()
        return head

    def _start(self, fmt: AudioFormat | None, exact: bool) -> Transcoder:
        if fmt is None:
            raise AudioError("unrecognized audio format (expected WAV, Ogg, WebM, MP4/M4A, MP3, FLAC or AAC)")
        self._source = fmt
        self._inner = _make(fmt, self._dst, allow_passthrough=exact)
        self.passthrough = self._inner.passthrough
        return self._inner
