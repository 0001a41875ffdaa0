"""STT emulation: audio in any Gradium input format, `text`/`end_text`/`step` messages out.

Input is decoded and resampled to 24 kHz, Gradium's native STT rate, and read by the tone
recognizer, in two halves: `SttAudio` (the audio: decoding and frame labels, the costly part) and
`SttWords` (words, their release and VAD steps: cheap, and all that a `flush` changes). Words are held
back for `delay_in_frames` x 80 ms of further audio, like the real model's lookahead, so `flush` and the
"feed zeros to accelerate" trick behave as documented.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.audio.formats import AudioFormat
from gateway.emulator import tones
from gateway.emulator.audio_io import AudioDecoder
from gateway.emulator.protocol import STT_FRAME_SIZE, STT_SAMPLE_RATE, VAD_HORIZONS, SttSetup
from gateway.emulator.tone_decoder import ToneFrames, WordSnapshot, WordTracker
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


@dataclass(frozen=True, slots=True)
class Tick:
    """A whole 80 ms frame of input is in: release the words due, then a `step` with this VAD reading."""

    index: int
    now_s: float
    silence_s: float  # trailing silence of the audio so far


FINAL = "final"  # end of input: the word in progress is finished whatever it sounds like
# What the audio half hands the word half: frame labels (`tone_decoder`), ticks, FINAL.
Op = tuple[int, ...] | Tick | str


class SttAudio:
    """The audio half of the engine: input decoded, resampled, framed and labelled into `Op`s.

    Its output is a function of the audio alone (flushes never reach it): the replay cache keeps it per
    audio prefix (`stt_replay.py`).
    """

    def __init__(self, audio_format: AudioFormat) -> None:
        self._decoder = AudioDecoder(audio_format, STT_SAMPLE_RATE)
        self._frames = ToneFrames(STT_SAMPLE_RATE)
        self._frame_fill = 0
        self._step_idx = 0

    @property
    def time_s(self) -> float:
        return self._frames.time_s

    def feed(self, data: bytes) -> list[Op]:
        return self._feed_pcm(self._decoder.decode(data))

    def finish(self) -> list[Op]:
        """End of input: drain the decoder, complete the last step, label the frames at the very end."""
        ops = self._feed_pcm(self._decoder.flush())
        if self._frame_fill:
            ops += self._feed_pcm(np.zeros(STT_FRAME_SIZE - self._frame_fill, dtype=np.int16))
        ops += [tuple(self._frames.flush()), FINAL]
        return ops

    def _feed_pcm(self, pcm: np.ndarray) -> list[Op]:
        ops: list[Op] = []
        pos = 0
        while pos < len(pcm):
            take = min(STT_FRAME_SIZE - self._frame_fill, len(pcm) - pos)
            if labels := self._frames.feed(pcm[pos : pos + take]):
                ops.append(tuple(labels))
            self._frame_fill += take
            pos += take
            if self._frame_fill == STT_FRAME_SIZE:
                self._frame_fill = 0
                ops.append(Tick(self._step_idx, self._frames.time_s, self._frames.trailing_silence_s))
                self._step_idx += 1
        return ops


# `SttWords.snapshot`: (delay, emit steps, held words, word tracker).
WordsSnapshot = tuple[float, bool, tuple[tones.Word, ...], WordSnapshot]


class SttWords:
    """The word half of the engine: `Op`s and flushes in, `text`/`end_text`/`step` messages out.

    Words are held back for `delay_in_frames` x 80 ms of further audio, like the real model's lookahead.
    Cheap next to the audio half, and all the state a flush changes.
    """

    def __init__(self, delay_in_frames: int) -> None:
        self._words = WordTracker(STT_SAMPLE_RATE)
        self._delay_s = delay_in_frames * FRAME_S
        self._held: deque[tones.Word] = deque()
        self.emit_steps = True

    def apply(self, ops: Iterable[Op]) -> list[Message]:
        out: list[Message] = []
        for op in ops:
            if type(op) is tuple:
                self._held.extend(self._words.read(op))
            elif isinstance(op, Tick):
                out += self._release(op.now_s)
                if self.emit_steps:
                    out.append(self._step(op))
            else:  # FINAL
                self._held.extend(self._words.flush(final=True))
                out += self._release(None)
        return out

    def flush(self) -> list[Message]:
        """Release every held word and the one in progress once it is over (`flush` -> `flushed`)."""
        self._held.extend(self._words.flush(final=False))
        return self._release(None)

    def snapshot(self) -> WordsSnapshot:
        return self._delay_s, self.emit_steps, tuple(self._held), self._words.snapshot()

    @classmethod
    def restore(cls, snap: WordsSnapshot) -> SttWords:
        w = cls(0)
        w._delay_s, w.emit_steps, held, words = snap
        w._held.extend(held)
        w._words = WordTracker.restore(STT_SAMPLE_RATE, words)
        return w

    def _release(self, now: float | None) -> list[Message]:
        """The held words due at `now` (None: all of them)."""
        out: list[Message] = []
        while self._held and (now is None or self._held[0].stop_s + self._delay_s <= now):
            word = self._held.popleft()
            out.append(wire.timed_text(word.text, word.start_s))
            out.append(wire.end_text(word.stop_s))
        return out

    def _step(self, tick: Tick) -> Message:
        vad = inactivity_probs(tick.silence_s, self._words.speech_active, self._words.sentence_ended)
        return wire.step(vad, tick.index, FRAME_S, (tick.index + 1) * FRAME_S)


class SttEngine:
    """Both halves in a row: what a request decodes with when nothing is replayed."""

    def __init__(self, setup: SttSetup) -> None:
        self._audio = SttAudio(setup.audio_format)
        self._words = SttWords(setup.delay_in_frames)

    @property
    def emit_steps(self) -> bool:
        return self._words.emit_steps

    @emit_steps.setter
    def emit_steps(self, value: bool) -> None:
        self._words.emit_steps = value

    @property
    def audio_seconds(self) -> float:
        return self._audio.time_s

    def feed_audio(self, data: bytes) -> list[Message]:
        return self._words.apply(self._audio.feed(data))

    def flush(self) -> list[Message]:
        """Release every held word and the one in progress once it is over (`flush` -> `flushed`)."""
        return self._words.flush()

    def finish(self) -> list[Message]:
        """End of input: drain the decoder, complete the last step, release everything."""
        return self._words.apply(self._audio.finish())
