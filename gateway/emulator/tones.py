"""The tone codec: text spelled as pure tones, so the emulator's ASR can read what its TTS said.

Each symbol of a small alphabet is a short sine burst at its own frequency, 65 Hz apart from 380
to 3045 Hz, inside the telephone band, so G.711 at 8 kHz, 32 kbps mp3 and Opus all keep them. A
test can push text through TTS, through any transcode the gateway does, back through STT, and
compare words.

Layout of the signal:
- a character is a `TONE_S` burst followed by a `CHAR_GAP_S` gap;
- a word ends with `WORD_GAP_S` of silence, plus `SENTENCE_PAUSE_S` after `.`, `?` or `!` and
  `COMMA_PAUSE_S` after `,` (so turn-taking emulation has real pauses to look at);
- a letter equal to the previous one is sent as the REPEAT symbol, so two adjacent bursts never
  share a frequency. Codecs smear short gaps away; with this rule the decoder never needs them.

The decoder is alignment-free: it slides a 30 ms Hann window every 5 ms, labels each window with
the symbol holding most of its energy (or silence), keeps runs of at least 20 ms, and splits
words on 60 ms of silence. Thresholds are relative to the recent tone level, so gain changes and
codec noise do not matter; codec delay and padding only shift the timestamps.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# Alphabet. Letters, digits and the apostrophe make words; the punctuation marks are spoken as
# their own symbols at the end of the word they are attached to.
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789'"
PUNCTUATION = ".,?!"
SENTENCE_END = frozenset(".?!")
REPEAT = "\x00"
# REPEAT is the most frequent non-letter symbol, so it takes the bottom of the band, which even
# 8 kbps mp3 keeps; rare punctuation takes the top.
SYMBOLS = REPEAT + LETTERS + PUNCTUATION
BASE_HZ = 380.0
STEP_HZ = 65.0
FREQUENCIES: dict[str, float] = {s: BASE_HZ + i * STEP_HZ for i, s in enumerate(SYMBOLS)}

# Timing of the synthesized signal (seconds).
TONE_S = 0.050
CHAR_GAP_S = 0.015
WORD_GAP_S = 0.130
COMMA_PAUSE_S = 0.100
SENTENCE_PAUSE_S = 0.320
LEAD_IN_S = 0.060
RAMP_S = 0.005
AMPLITUDE = 0.35  # of full scale: loud enough to dwarf codec noise, far from clipping

MIN_BREAK_S = 0.1
MAX_BREAK_S = 2.0

_TAG = re.compile(
    r"""<\s*(?:break\s+time\s*=\s*["']?\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*["']?\s*/?|/?\s*flush\s*/?)\s*>""",
    re.IGNORECASE,
)
_EXTRA_PUNCT = {";": ",", ":": ",", "\u2026": "."}


@dataclass(frozen=True, slots=True)
class WordTiming:
    """Where a spoken word sits in the synthesized audio; `text` is what the ASR will return."""

    text: str
    start_s: float
    stop_s: float


# What the recognizer returns has the same shape.
Word = WordTiming


@dataclass(frozen=True, slots=True)
class Pause:
    """Silence requested with a `<break time="..."/>` tag."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Token:
    """A whitespace-delimited token as written, and the word the tones spell for it."""

    original: str
    spoken: str


@dataclass(frozen=True, slots=True)
class Flush:
    """A `<flush>` tag: the streaming TTS renders everything before it now; audio is unchanged."""


def normalize_word(token: str) -> str:
    """The spoken form of one whitespace-delimited token (may be empty: nothing is said).

    Case-folded, accents stripped, `;`/`:` read as commas, anything else outside the alphabet
    dropped, and punctuation kept only at the end of the word, as the ASR will return it.
    """
    decomposed = unicodedata.normalize("NFKD", token.casefold())
    body: list[str] = []
    tail: list[str] = []
    for ch in decomposed:
        ch = _EXTRA_PUNCT.get(ch, ch)
        if ch in LETTERS:
            body.append(ch)
            tail.clear()  # punctuation in the middle of a word ("e.g") is not spoken
        elif ch in PUNCTUATION:
            tail.append(ch)
    if not body:
        return ""
    return "".join(body) + "".join(tail[-1:])


def _tokens(text: str) -> list[Token]:
    tokens = (Token(t, normalize_word(t)) for t in text.split())
    return [t for t in tokens if t.spoken]


def parse(text: str) -> list[Token | Pause | Flush]:
    """Split text into spoken tokens, `<break>` pauses and `<flush>` markers."""
    items: list[Token | Pause | Flush] = []
    pos = 0
    for m in _TAG.finditer(text):
        items.extend(_tokens(text[pos : m.start()]))
        if m.group(1) is not None:
            value = float(m.group(1)) / (1000.0 if (m.group(2) or "s").lower() == "ms" else 1.0)
            items.append(Pause(min(MAX_BREAK_S, max(MIN_BREAK_S, value))))
        else:
            items.append(Flush())
        pos = m.end()
    items.extend(_tokens(text[pos:]))
    return items


def normalize_words(text: str) -> list[str]:
    """The words `transcribe` is expected to return for audio synthesized from `text`."""
    return [item.spoken for item in parse(text) if isinstance(item, Token)]


def encode_symbols(word: str) -> str:
    """The burst sequence for a normalized word: no two adjacent symbols are equal."""
    out: list[str] = []
    prev = ""
    for ch in word:
        if ch == prev and out and out[-1] != REPEAT:
            out.append(REPEAT)
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def decode_symbols(symbols: str) -> str:
    chars: list[str] = []
    for s in symbols:
        if s == REPEAT:
            if chars:
                chars.append(chars[-1])
        else:
            chars.append(s)
    return "".join(chars)


def pause_after(word: str) -> float:
    """Silence after a word: the word gap, longer after punctuation."""
    extra = SENTENCE_PAUSE_S if word[-1] in SENTENCE_END else COMMA_PAUSE_S if word[-1] == "," else 0.0
    return WORD_GAP_S + extra


class ToneSynth:
    """Renders words to int16 audio at one sample rate, keeping a running clock.

    The streaming TTS calls `word` and `pause` as text arrives; `synthesize` is the one-shot form.
    """

    def __init__(self, sample_rate: int, lead_in_s: float = LEAD_IN_S, tone_s: float = TONE_S) -> None:
        if sample_rate < 8000:
            raise ValueError("the tone codec needs at least 8 kHz")
        self.sample_rate = sample_rate
        self._samples = 0
        self._tone_len = round(tone_s * sample_rate)  # a voice's identity (voices.Voice.tone_s)
        self._gap_len = round(CHAR_GAP_S * sample_rate)
        ramp = round(RAMP_S * sample_rate)
        envelope = np.ones(self._tone_len)
        # Raised-cosine edges: a hard onset is a click, and a click has energy at every symbol.
        edge = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, ramp))
        envelope[:ramp] = edge
        envelope[-ramp:] = edge[::-1]
        t = np.arange(self._tone_len) / sample_rate
        scale = AMPLITUDE * 32767.0
        self._bursts: dict[str, np.ndarray] = {
            s: (np.sin(2 * math.pi * f * t) * envelope * scale).astype(np.int16) for s, f in FREQUENCIES.items()
        }
        self._pending_lead = round(lead_in_s * sample_rate)

    @property
    def time_s(self) -> float:
        """Seconds rendered so far."""
        return self._samples / self.sample_rate

    def _silence(self, n: int) -> np.ndarray:
        self._samples += n
        return np.zeros(n, dtype=np.int16)

    def _lead(self) -> list[np.ndarray]:
        if not self._pending_lead:
            return []
        n, self._pending_lead = self._pending_lead, 0
        return [self._silence(n)]

    def word(self, word: str) -> tuple[np.ndarray, WordTiming]:
        """Audio for one normalized word, including the silence after it."""
        parts = self._lead()
        start = self._samples
        gap = np.zeros(self._gap_len, dtype=np.int16)
        symbols = encode_symbols(word)
        for i, s in enumerate(symbols):
            parts.append(self._bursts[s])
            if i < len(symbols) - 1:
                parts.append(gap)
        n_tone = len(symbols) * self._tone_len + (len(symbols) - 1) * self._gap_len
        self._samples += n_tone
        stop = self._samples
        parts.append(self._silence(round(pause_after(word) * self.sample_rate)))
        timing = WordTiming(word, start / self.sample_rate, stop / self.sample_rate)
        return np.concatenate(parts), timing

    def pause(self, seconds: float) -> np.ndarray:
        parts = [*self._lead(), self._silence(round(seconds * self.sample_rate))]
        return np.concatenate(parts)


def synthesize(text: str, sample_rate: int) -> tuple[np.ndarray, list[WordTiming]]:
    """Mono int16 audio spelling `text` in tones, and where each word sits in it."""
    synth = ToneSynth(sample_rate)
    parts: list[np.ndarray] = []
    timings: list[WordTiming] = []
    for item in parse(text):
        if isinstance(item, Pause):
            parts.append(synth.pause(item.seconds))
        elif isinstance(item, Token):
            audio, timing = synth.word(item.spoken)
            parts.append(audio)
            timings.append(timing)
    if not parts:
        parts.append(synth.pause(0.0))
    return np.concatenate(parts), timings
