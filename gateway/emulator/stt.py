"""STT emulation: audio in any Gradium input format, `text`/`end_text`/`step` messages out.

Input is decoded and resampled to 24 kHz, Gradium's native STT rate, and read by the tone
recognizer. Words are held back for `delay_in_frames` x 80 ms of further audio, like the real
model's lookahead, so `flush` and the "feed zeros to accelerate" trick behave as documented.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from gateway.emulator import tones
from gateway.emulator.audio_io import AudioDecoder
from gateway.emulator.protocol import STT_FRAME_SIZE, STT_SAMPLE_RATE, VAD_HORIZONS, SttSetup
from gateway.emulator.tone_decoder import ToneRecognizer
from gateway.upstream import protocol as wire

Message = dict[str, Any]
FRAME_S = STT_FRAME_SIZE / STT_SAMPLE_RATE

# Semantic VAD: time constants of the rise of inactivity_prob with trailing silence. After a
# sentence-final word the turn is probably over, so the rise is faster (that is the "semantic" part).
TAU_MID_SENTENCE_S = 0.6
TAU_SENTENCE_END_S = 0.25
P_SPEAKING = 0.02
P_MIN, P_MAX = 0.01, 0.99


def inactivity_probs(trailing_silence_s: float, speaking: bool, sentence_ended: bool) -> list[Message]:
    """One entry per horizon. Longer horizons rise more slowly: they are a harder promise."""
    out = []
    tau = TAU_SENTENCE_END_S if sentence_ended else TAU_MID_SENTENCE_S
    for horizon in VAD_HORIZONS:
        p = P_SPEAKING if speaking else 1.0 - math.exp(-trailing_silence_s / (tau * math.sqrt(horizon)))
        out.append({"horizon_s": horizon, "inactivity_prob": round(min(P_MAX, max(P_MIN, p)), 4)})
    return out


class SttEngine:
    def __init__(self, setup: SttSetup) -> None:
        self._decoder = AudioDecoder(setup.audio_format, STT_SAMPLE_RATE)
        self._recognizer = ToneRecognizer(STT_SAMPLE_RATE)
        self._delay_s = setup.delay_in_frames * FRAME_S
        self._held: deque[tones.Word] = deque()
        self._frame_fill = 0
        self._step_idx = 0
        self.emit_steps = True

    @property
    def audio_seconds(self) -> float:
        return self._recognizer.time_s

    def feed_audio(self, data: bytes) -> list[Message]:
        return self._feed_pcm(self._decoder.decode(data))

    def flush(self, final: bool = False) -> list[Message]:
        """Release every held word and the one in progress once it is over (`flush` -> `flushed`); at the
        end of input (`final`) the word in progress is finished whatever it sounds like."""
        self._held.extend(self._recognizer.flush(final=final))
        return self._release(force=True)

    def finish(self) -> list[Message]:
        """End of input: drain the decoder, complete the last step, release everything."""
        out = self._feed_pcm(self._decoder.flush())
        if self._frame_fill:
            out += self._feed_pcm(np.zeros(STT_FRAME_SIZE - self._frame_fill, dtype=np.int16))
        out += self.flush(final=True)
        return out

    def _feed_pcm(self, pcm: np.ndarray) -> list[Message]:
        out: list[Message] = []
        pos = 0
        while pos < len(pcm):
            take = min(STT_FRAME_SIZE - self._frame_fill, len(pcm) - pos)
            self._held.extend(self._recognizer.feed(pcm[pos : pos + take]))
            self._frame_fill += take
            pos += take
            if self._frame_fill == STT_FRAME_SIZE:
                self._frame_fill = 0
                out += self._release(force=False)
                if self.emit_steps:
                    out.append(self._step())
                self._step_idx += 1
        return out

    def _release(self, *, force: bool) -> list[Message]:
        out: list[Message] = []
        now = self._recognizer.time_s
        while self._held and (force or self._held[0].stop_s + self._delay_s <= now):
            word = self._held.popleft()
            out.append(wire.timed_text(word.text, word.start_s))
            out.append(wire.end_text(word.stop_s))
        return out

    def _step(self) -> Message:
        r = self._recognizer
        vad = inactivity_probs(r.trailing_silence_s, r.speech_active, r.sentence_ended)
        return wire.step(vad, self._step_idx, FRAME_S, (self._step_idx + 1) * FRAME_S)
