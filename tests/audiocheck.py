"""Test helpers: decode what the gateway produced (independently, with PyAV) and read back the emulator's tones."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from gateway.emulator.tone_decoder import ToneRecognizer
from gateway.emulator.tones import synthesize


@dataclass
class Decoded:
    codec: str
    sample_rate: int
    channels: int
    pcm: np.ndarray  # int16 mono

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


def decode(data: bytes, fmt: str | None = None, rate: int | None = None) -> Decoded:
    """Decode a container (mp3, wav, ogg...) or, with fmt='s16le'|'mulaw'|'alaw', raw samples at `rate`."""
    options = {"sample_rate": str(rate), "ac": "1"} if fmt else {}
    with av.open(io.BytesIO(data), format=fmt, options=options) as c:
        stream = c.streams.audio[0]
        codec = stream.codec_context.name
        resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.codec_context.sample_rate)
        chunks = []
        for frame in c.decode(stream):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray().reshape(-1))
        return Decoded(codec, stream.codec_context.sample_rate, stream.codec_context.channels,
                       np.concatenate(chunks) if chunks else np.zeros(0, np.int16))


def words(pcm: np.ndarray, rate: int) -> list[str]:
    """The words the emulator's tone codec reads in `pcm`."""
    rec = ToneRecognizer(rate)
    out = rec.feed(pcm.astype(np.int16))
    out += rec.flush()
    return [w.text for w in out]


def expected_words(text: str) -> list[str]:
    _, timings = synthesize(text, 16000)
    return [t.text for t in timings]


def speech(text: str, rate: int) -> bytes:
    """`text` spoken by the emulator's tone voice, as raw s16le mono at `rate`."""
    pcm, _ = synthesize(text, rate)
    return pcm.astype("<i2").tobytes()


def wav_bytes(text: str, rate: int) -> bytes:
    """`text` spoken by the emulator's tone voice, as a WAV file."""
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(speech(text, rate))
    return buf.getvalue()
