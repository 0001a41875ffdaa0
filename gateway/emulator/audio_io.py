"""The emulator's side of the audio layer: int16 PCM to a Gradium output format and back.

All codec work goes through `gateway.audio.make_transcoder`; only the identity case
(s16 PCM already at the wire rate) skips it, which is also what real Gradium serves fastest.
"""

from __future__ import annotations

import numpy as np

from gateway.audio.formats import PCM_S16LE, AudioFormat, pcm16
from gateway.audio.transcode import AudioError, Transcoder, make_transcoder
from gateway.emulator.protocol import UNSUPPORTED, GradiumError


def _is_plain_pcm(fmt: AudioFormat) -> bool:
    return fmt.is_raw_pcm and fmt.encoding == PCM_S16LE and fmt.channels == 1


class AudioEncoder:
    """int16 mono at `sample_rate` in, bytes in the Gradium output format out."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        # Tones are synthesized directly at the wire rate: no resampling for any PCM/G.711 rate,
        # and 48 kHz for wav and opus (Gradium's native rate).
        self.sample_rate = fmt.sample_rate
        self._transcoder: Transcoder | None = None
        if not _is_plain_pcm(fmt):
            try:
                self._transcoder = make_transcoder(pcm16(fmt.sample_rate), fmt)
            except AudioError as exc:
                raise GradiumError(UNSUPPORTED, f"Unsupported output format: {exc}") from None

    def encode(self, pcm: np.ndarray) -> bytes:
        data = pcm.astype("<i2", copy=False).tobytes()
        return data if self._transcoder is None else self._transcoder.feed(data)

    def flush(self) -> bytes:
        return b"" if self._transcoder is None else self._transcoder.flush()


class AudioDecoder:
    """Bytes in a Gradium input format in, int16 mono at `sample_rate` out, any chunking."""

    def __init__(self, fmt: AudioFormat, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        target = pcm16(sample_rate)
        self._transcoder: Transcoder | None = None
        if not (_is_plain_pcm(fmt) and fmt.sample_rate == sample_rate):
            # For wav and opus the audio layer reads rate and layout from the container header,
            # so the nominal rate of the format name does not matter.
            try:
                self._transcoder = make_transcoder(fmt, target)
            except AudioError as exc:
                raise GradiumError(UNSUPPORTED, f"Unsupported input format: {exc}") from None
        self._carry = b""  # an odd trailing byte: a sample split across two messages

    def _samples(self, data: bytes) -> np.ndarray:
        data = self._carry + data
        cut = len(data) - (len(data) % 2)
        self._carry = data[cut:]
        return np.frombuffer(data[:cut], dtype="<i2").astype(np.int16, copy=False)

    def decode(self, data: bytes) -> np.ndarray:
        try:
            out = data if self._transcoder is None else self._transcoder.feed(data)
        except AudioError as exc:
            raise GradiumError(UNSUPPORTED, f"Invalid audio: {exc}") from None
        return self._samples(out)

    def flush(self) -> np.ndarray:
        try:
            out = b"" if self._transcoder is None else self._transcoder.flush()
        except AudioError as exc:
            raise GradiumError(UNSUPPORTED, f"Invalid audio: {exc}") from None
        self._carry = b""
        return self._samples(out)
