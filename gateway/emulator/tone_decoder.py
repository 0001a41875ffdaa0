"""The tone codec's streaming decoder (the codec itself, its alphabet and its layout: `tones.py`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from gateway.emulator import tones
from gateway.emulator.tones import FREQUENCIES, SENTENCE_END, SYMBOLS, Word, decode_symbols

# Decoder parameters.
WINDOW_S = 0.030
HOP_S = 0.005
MIN_RUN_FRAMES = 4  # 20 ms: shorter runs are transitions between two bursts or codec glitches
WORD_GAP_FRAMES = 12  # 60 ms of silence ends a word; character gaps never get there
# A flush mid-stream ends the word in progress only after this many silent frames (40 ms of quiet: no
# window fits in a 15 ms character gap, so the word is known to be over); a word still being spoken
# stays open, so where a client's flush lands in the audio never splits a word.
WORD_OVER_FRAMES = 3
PURITY_MIN = 0.45  # share of the window's energy the best symbol must hold
# Below this purity a loud window is noise, not a transition between two bursts (which keeps
# 0.2+ in each), so it counts towards a word gap.
NOISE_PURITY = 0.12
RELATIVE_FLOOR = 0.01  # -20 dB under the recent tone level counts as silence (codec smear)
ABSOLUTE_FLOOR = 1e-7  # -70 dBFS mean square: digital silence and dither
LEVEL_DECAY_PER_S = 0.25  # the level reference forgets a loud passage within a few seconds


# What the audio says about one analysis frame, all the word half of the decoder reads of it: a symbol
# (>= 0), a loud frame that is no symbol (a transition between two bursts), or quiet (silence or noise:
# towards a word gap).
TRANSITION = -1
QUIET = -2


def frame_geometry(sample_rate: int) -> tuple[int, int]:
    """Analysis window and hop, in samples."""
    return round(WINDOW_S * sample_rate), round(HOP_S * sample_rate)


class ToneFrames:
    """The audio half of the decoder: labels each analysis frame (a symbol, `TRANSITION` or `QUIET`).

    Everything here follows from the audio alone (a flush never touches it), which lets the STT replay
    cache keep these labels per audio prefix and run only the word half for each client's flushes.
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate < 8000:
            raise ValueError("the tone codec needs at least 8 kHz")
        self.sample_rate = sample_rate
        self._win, self._hop = frame_geometry(sample_rate)
        window = np.hanning(self._win)
        n = np.arange(self._win)
        freqs = np.array(list(FREQUENCIES.values()))
        # One windowed complex exponential per symbol: a frame's projection on it is a DFT at that
        # exact frequency, so no bin straddling whatever the sample rate.
        phase = 2 * math.pi * np.outer(n, freqs) / sample_rate
        # Real cos and sin halves side by side: one real matmul (BLAS) instead of a complex one.
        self._basis = np.ascontiguousarray(
            np.hstack([window[:, None] * np.cos(phase), window[:, None] * np.sin(phase)])
        )
        self._n_symbols = len(freqs)
        self._window = window
        self._window_power = float(np.sum(window**2))
        # A pure tone exactly on a symbol frequency puts |X|^2 = (A*sum(w)/2)^2 in its bin while the
        # windowed frame holds A^2*sum(w^2)/2: this ratio maps purity to about 1.0 for a pure tone.
        self._purity_scale = (float(np.sum(window)) ** 2 / 2.0) / self._window_power
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0  # absolute sample index of _buf[0]
        self._next_frame = 0  # index of the next frame to analyze
        self._total = 0  # samples fed
        self._level = 0.0
        self._level_decay = LEVEL_DECAY_PER_S ** (self._hop / sample_rate)
        self._last_tone_frame = -1

    @property
    def time_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._total / self.sample_rate

    @property
    def trailing_silence_s(self) -> float:
        """Seconds since the last tone, or since the start when none was heard yet."""
        if self._last_tone_frame < 0:
            return self.time_s
        end = (self._last_tone_frame * self._hop + self._win / 2) / self.sample_rate
        return max(0.0, self.time_s - end)

    def feed(self, pcm_int16: np.ndarray) -> list[int]:
        """Add audio; return the labels of the frames it completed, in order."""
        if len(pcm_int16) == 0:
            return []
        self._buf = np.concatenate([self._buf, np.asarray(pcm_int16, dtype=np.float64) / 32768.0])
        self._total += len(pcm_int16)
        return self._analyze(self._buf)

    def flush(self) -> list[int]:
        """End of input: label the frames overlapping the end of the audio, zeros in place of the future.

        They are not revisited if more audio follows: the time base stays exact and nothing is decoded twice.
        """
        padded = np.concatenate([self._buf, np.zeros(self._win, dtype=np.float64)])
        labels = self._analyze(padded, limit=self._total)
        # The next frame may start past the end of the audio; `_analyze` skips to it by offset.
        keep = min(self._next_frame * self._hop, self._total)
        self._buf = self._buf[keep - self._buf_start :]
        self._buf_start = keep
        return labels

    def _analyze(self, buf: np.ndarray, limit: int | None = None) -> list[int]:
        """Label every whole frame available in `buf` (frames starting before `limit` if given)."""
        first = self._next_frame * self._hop - self._buf_start
        count = (len(buf) - first - self._win) // self._hop + 1
        if limit is not None:
            count = min(count, -(-(limit - self._next_frame * self._hop) // self._hop))
        if count <= 0:
            return []
        span = buf[first : first + (count - 1) * self._hop + self._win]
        frames = np.lib.stride_tricks.sliding_window_view(span, self._win)[:: self._hop][:count]
        projected = frames @ self._basis
        spectrum = projected[:, : self._n_symbols] ** 2 + projected[:, self._n_symbols :] ** 2
        power = np.sum((frames * self._window) ** 2, axis=1)
        best = np.argmax(spectrum, axis=1)
        best_energy = spectrum[np.arange(count), best]
        with np.errstate(divide="ignore", invalid="ignore"):
            purity = np.where(power > 0, best_energy / (power * self._purity_scale), 0.0)
        mean_square = power / self._window_power
        labels = [
            self._label(self._next_frame + i, int(best[i]), float(purity[i]), float(mean_square[i]))
            for i in range(count)
        ]
        self._next_frame += count
        if limit is None:
            drop = self._next_frame * self._hop - self._buf_start
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return labels

    def _label(self, frame: int, symbol: int, purity: float, mean_square: float) -> int:
        self._level *= self._level_decay
        loud = mean_square > ABSOLUTE_FLOOR and mean_square > self._level * RELATIVE_FLOOR
        if loud and purity >= PURITY_MIN:
            self._level = max(self._level, mean_square)
            self._last_tone_frame = frame
            return symbol
        return TRANSITION if loud and purity >= NOISE_PURITY else QUIET


# The word half's state as `WordTracker.snapshot` gives it: (run, word in progress, silent frames,
# frames read, last word).
WordSnapshot = tuple[tuple[int, int, int] | None, tuple[tuple[int, ...], int, int] | None, int, int, Word | None]


class WordTracker:
    """The word half of the decoder: frame labels in, words out (runs become symbols, gaps end words).

    Cheap, and the only state a client's flush changes; `snapshot`/`restore` let the replay cache run it
    from any point of an audio prefix it already labelled.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._win, self._hop = frame_geometry(sample_rate)
        self._frame = 0  # index of the next label
        self._run_label = -1
        self._run_len = 0
        self._run_start = 0
        self._symbols: list[int] = []
        self._word_start = 0
        self._word_stop = 0
        self._silent_frames = 0
        self._last_word: Word | None = None

    @property
    def speech_active(self) -> bool:
        """A word is in progress: tones heard recently and no word boundary since."""
        return bool(self._symbols) or (self._run_label >= 0 and self._run_len > 0)

    @property
    def sentence_ended(self) -> bool:
        """The last completed word ended with `.`, `?` or `!`."""
        return self._last_word is not None and self._last_word.text[-1:] in SENTENCE_END

    @property
    def last_word(self) -> Word | None:
        return self._last_word

    def read(self, labels: Iterable[int]) -> list[Word]:
        """Labels of the next frames in; the words they completed out."""
        words: list[Word] = []
        for label in labels:
            word = self._step(label)
            if word is not None:
                words.append(word)
        return words

    def flush(self, final: bool) -> list[Word]:
        """Finish the word in progress now. `final` False (a client's flush mid-stream): only a word the
        audio already shows to be over is finished, from the frames read so far; one still being spoken
        continues with the audio that follows. The words are then the same wherever the flush lands,
        which depends on how the audio's frames happened to arrive."""
        if not final and self._silent_frames < WORD_OVER_FRAMES:
            return []
        self._close_run()
        word = self._end_word()
        return [word] if word is not None else []

    def snapshot(self) -> WordSnapshot:
        """Everything that decides the words to come, hashable; values never read again are left out
        (a silence run's length, a finished word's bounds), so states that differ only there are equal."""
        run = (self._run_label, self._run_len, self._run_start) if self._run_label >= 0 else None
        word = (tuple(self._symbols), self._word_start, self._word_stop) if self._symbols else None
        return run, word, self._silent_frames, self._frame, self._last_word

    @classmethod
    def restore(cls, sample_rate: int, snap: WordSnapshot) -> WordTracker:
        t = cls(sample_rate)
        run, word, t._silent_frames, t._frame, t._last_word = snap
        if run is not None:
            t._run_label, t._run_len, t._run_start = run
        if word is not None:
            symbols, t._word_start, t._word_stop = word
            t._symbols = list(symbols)
        return t

    def _frame_center(self, frame: int) -> float:
        return (frame * self._hop + self._win / 2) / self.sample_rate

    def _step(self, label: int) -> Word | None:
        frame = self._frame
        self._frame += 1
        if label == QUIET:
            self._silent_frames += 1
        else:
            self._silent_frames = 0
        label = max(label, TRANSITION)  # no symbol either way
        word: Word | None = None
        if label != self._run_label:
            self._close_run()
            self._run_label, self._run_len, self._run_start = label, 0, frame
        self._run_len += 1
        if self._silent_frames == WORD_GAP_FRAMES:
            self._close_run()
            word = self._end_word()
        return word

    def _close_run(self) -> None:
        """Keep the current run as a symbol if it lasted long enough."""
        if self._run_label >= 0 and self._run_len >= MIN_RUN_FRAMES:
            # Adjacent bursts never share a symbol, so a repeat here is one burst split by a glitch.
            if not self._symbols or self._symbols[-1] != self._run_label:
                if not self._symbols:
                    self._word_start = self._run_start
                self._symbols.append(self._run_label)
            self._word_stop = self._run_start + self._run_len - 1
        self._run_label, self._run_len = -1, 0

    def _end_word(self) -> Word | None:
        if not self._symbols:
            return None
        text = decode_symbols("".join(SYMBOLS[s] for s in self._symbols))
        self._symbols = []
        if not text:
            return None
        word = Word(text, self._frame_center(self._word_start), self._frame_center(self._word_stop))
        self._last_word = word
        return word


class ToneRecognizer:
    """Streaming decoder of the tone codec: `ToneFrames` then `WordTracker`.

    Feed int16 mono chunks of any size; each call returns the words completed so far. Words end
    on 60 ms of silence (so a word is reported shortly after it is spoken) or on `flush`.
    """

    def __init__(self, sample_rate: int) -> None:
        self.frames = ToneFrames(sample_rate)
        self.words = WordTracker(sample_rate)
        self.sample_rate = sample_rate

    @property
    def time_s(self) -> float:
        """Seconds of audio fed so far."""
        return self.frames.time_s

    @property
    def trailing_silence_s(self) -> float:
        return self.frames.trailing_silence_s

    @property
    def speech_active(self) -> bool:
        return self.words.speech_active

    @property
    def sentence_ended(self) -> bool:
        return self.words.sentence_ended

    @property
    def last_word(self) -> Word | None:
        return self.words.last_word

    def feed(self, pcm_int16: np.ndarray) -> list[Word]:
        """Add audio; return the words that completed."""
        return self.words.read(self.frames.feed(pcm_int16))

    def flush(self, final: bool = True) -> list[Word]:
        """Finish the word in progress now; decoding can continue with more audio afterwards.

        `final` (end of input): the frames overlapping the end of the audio are read first, and the word in
        progress is finished whatever it sounds like. Otherwise see `WordTracker.flush`.
        """
        words = self.words.read(self.frames.flush()) if final else []
        return words + self.words.flush(final)


def transcribe(pcm: np.ndarray, sample_rate: int) -> str:
    """Words decoded from a whole clip, joined with single spaces."""
    recognizer = ToneRecognizer(sample_rate)
    words = recognizer.feed(pcm)
    words += recognizer.flush()
    return " ".join(w.text for w in words)


def tone_length_s(pcm: np.ndarray, sample_rate: int) -> float:
    """The median length of the tone bursts in `pcm`: which voice spoke (see `voices.Voice.tone_s`).

    Bursts are runs of the 1 ms envelope above a tenth of the peak; character gaps (15 ms) split them.
    """
    x = np.abs(pcm.astype(np.float64))
    hop = max(1, sample_rate // 1000)
    env = x[: len(x) // hop * hop].reshape(-1, hop).max(axis=1)
    if not len(env) or env.max() <= 0:
        return 0.0
    on = np.concatenate([[False], env > env.max() * 0.1, [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    runs = (edges[1::2] - edges[::2]) * hop / sample_rate
    runs = runs[runs > tones.MIN_BREAK_S / 10]
    return float(np.median(runs)) if len(runs) else 0.0
