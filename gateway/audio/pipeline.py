"""The two transcoder shapes behind `make_transcoder`.

`PcmTranscoder`: PCM (raw or WAV) to PCM (raw or WAV) with numpy and soxr only. This is the hot
path between Gradium's PCM and most client formats, so it touches no PyAV objects, and when the
samples already match (WAV <-> raw at the same layout) it only strips or adds the header.

`CodecTranscoder`: a source (decoder), the same mix/resample chain, and a sink (encoder).
"""

from __future__ import annotations

import struct

import numpy as np

from .base import AudioError, Transcoder
from .decoders import Block, Source
from .encoders import Sink
from .formats import WAV, AudioFormat
from .libav import av
from .pcm import PcmDecoder, PcmEncoder, SampleChain
from .wav import WavReader, wav_header

# What decoding garbage can raise from PyAV, numpy or struct; all mean "bad input", not a bug.
DECODE_FAILURES: tuple[type[Exception], ...] = (av.FFmpegError, ValueError, struct.error, EOFError, OverflowError)


class PcmTranscoder(Transcoder):
    __slots__ = ("_chain", "_decoder", "_dst", "_encoder", "_header", "_identity", "_rate", "_wav")

    def __init__(self, src: AudioFormat, dst: AudioFormat) -> None:
        self._dst = dst
        self._wav = WavReader() if src.container == WAV else None
        self._header = wav_header(dst.encoding, dst.sample_rate, dst.channels) if dst.container == WAV else None
        self._encoder = PcmEncoder(dst.encoding)
        self._chain = SampleChain(dst.sample_rate, dst.channels)
        self._decoder: PcmDecoder | None = None
        self._identity = False
        self._rate = 0  # 0 until the input layout is known (WAV input: after its fmt chunk)
        if self._wav is None:
            self._configure(src.encoding, src.sample_rate, src.channels)

    def _configure(self, kind: str, rate: int, channels: int) -> None:
        dst = self._dst
        self._identity = (kind, rate, channels) == (dst.encoding, dst.sample_rate, dst.channels)
        self._decoder = None if self._identity else PcmDecoder(kind, channels)
        self._rate = rate

    def feed(self, data: bytes) -> bytes:
        if self._wav is not None:
            data = self._wav.feed(data)
            if not self._rate:
                spec = self._wav.spec
                if spec is None:
                    return self._take_header(b"")
                self._configure(spec.kind, spec.sample_rate, spec.channels)
        if self._identity:
            out = data
        else:
            assert self._decoder is not None
            x = self._decoder.decode(data)
            out = b"" if x is None else self._encode(self._chain.process(x, self._rate))
        if self._header is not None:
            return self._take_header(out)
        return out

    def _encode(self, parts: list[np.ndarray]) -> bytes:
        if len(parts) == 1:
            return self._encoder.encode(parts[0])
        return b"".join([self._encoder.encode(p) for p in parts if len(p)])

    def _take_header(self, out: bytes) -> bytes:
        header, self._header = self._header, None
        return header + out if header is not None else out

    def flush(self) -> bytes:
        # A sample split across chunks stays in the decoder: the stream may go on after this.
        tail = self._chain.drain()
        return self._take_header(self._encoder.encode(tail) if len(tail) else b"")


class CodecTranscoder(Transcoder):
    __slots__ = ("_chain", "_label", "_sink", "_source")

    def __init__(self, source: Source, sink: Sink, dst: AudioFormat, label: str) -> None:
        self._source = source
        self._sink = sink
        self._chain = SampleChain(dst.sample_rate, dst.channels)
        self._label = label

    def feed(self, data: bytes) -> bytes:
        try:
            blocks = self._source.feed(data)
            return self._encode(blocks) if blocks else b""
        except AudioError:
            raise
        except DECODE_FAILURES as exc:
            raise AudioError(f"could not transcode the {self._label} audio") from exc

    def _encode(self, blocks: list[Block]) -> bytes:
        out: list[bytes] = []
        for samples, rate in blocks:
            for part in self._chain.process(samples, rate):
                if len(part):
                    out.append(self._sink.write(part))
        return out[0] if len(out) == 1 else b"".join(out)

    def prime(self) -> None:
        self._sink.prime()

    def flush(self) -> bytes:
        try:
            out = self._encode(self._source.flush())
            tail = self._chain.drain()
            if len(tail):
                out += self._sink.write(tail)
            return out + self._sink.flush()
        except AudioError:
            raise
        except DECODE_FAILURES as exc:
            raise AudioError(f"could not transcode the {self._label} audio") from exc
