"""STT comparison: text normalization, WER/CER and the timing metrics of traffic.md §5.2.

Pure functions of `LegTrace`s; no I/O. The reference is the legacy leg of a candidate pair and the
primary of a noise pair (`PairTrace.reference`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from gateway.traffic.trace import LegTrace

EOT_MATCH_WINDOW_S = 1.5


@lru_cache(maxsize=2)
def _normalizer(english: bool) -> Callable[[str], str]:
    # OpenAI Whisper's own normalizers (the `whisper-normalizer` package, MIT): the English one also
    # standardizes numbers ("twenty five" -> "25") and British/American spellings.
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def normalize(text: str, language: str | None = "en") -> str:
    english = language is None or language.lower().split("-")[0] == "en"
    return " ".join(_normalizer(english)(text).split())


@dataclass(frozen=True, slots=True)
class ErrorCounts:
    sub: int
    dele: int
    ins: int
    ref_words: int
    hyp_words: int
    wer: float | None  # None when the reference is empty but the hypothesis is not
    cer: float | None


def error_counts(ref_text: str, hyp_text: str, language: str | None = "en") -> ErrorCounts:
    """Word errors of `hyp_text` against `ref_text` after Whisper-style normalization (jiwer alignment)."""
    import jiwer

    ref, hyp = normalize(ref_text, language), normalize(hyp_text, language)
    ref_n, hyp_n = len(ref.split()), len(hyp.split())
    if ref_n == 0:
        # nothing to align against: both empty is a perfect match, words from nowhere are all insertions
        return ErrorCounts(0, 0, hyp_n, 0, hyp_n, 0.0 if hyp_n == 0 else None, 0.0 if hyp_n == 0 else None)
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return ErrorCounts(words.substitutions, words.deletions, words.insertions, ref_n, hyp_n,
                       float(words.wer), float(chars.cer))


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def first_interim_ms(leg: LegTrace) -> float | None:
    t = next((o.t_ms for o in leg.outputs if o.kind == "interim" and o.text.strip()), None)
    return None if t is None else t - leg.sent_start_ms


def first_final_ms(leg: LegTrace) -> float | None:
    t = next((o.t_ms for o in leg.outputs if o.kind == "final" and o.text.strip()), None)
    return None if t is None else t - leg.sent_start_ms


def finalize_ms(leg: LegTrace) -> float | None:
    """Median time from each forwarded finalize/commit to the next final (a time to complete transcript)."""
    finals = [o.t_ms for o in leg.outputs if o.kind == "final"]
    deltas = []
    for c in leg.controls:
        if c.kind == "finalize":
            nxt = next((t for t in finals if t >= c.t_ms), None)
            if nxt is not None:
                deltas.append(nxt - c.t_ms)
    return _median(deltas)


def emission_ms(leg: LegTrace) -> float | None:
    """Median over final words of (final received - audio holding the word's end sent)."""
    lat = []
    for o in leg.outputs:
        if o.kind != "final":
            continue
        for w in o.words:
            sent = leg.t_sent_at_offset(w.end)
            if sent is not None:
                lat.append(o.t_ms - sent)
    return _median(lat)


def turn_times(leg: LegTrace) -> list[float]:
    """End-of-turn positions in audio seconds: the dialect's own, else the audio sent when it arrived."""
    out = []
    for o in leg.outputs:
        if o.kind == "turn" and o.turn == "end":
            out.append(o.audio_end_s if o.audio_end_s is not None else leg.offset_sent_by(o.t_ms))
    return out


def _eot_latency_ms(leg: LegTrace, turns: list[float]) -> float | None:
    ends = sorted(w.end for o in leg.outputs if o.kind == "final" for w in o.words)
    lat = []
    for t in turns:
        before = [e for e in ends if e <= t]
        if before:
            lat.append((t - before[-1]) * 1000)
    return _median(lat)


def match_turns(ref: list[float], hyp: list[float], window_s: float = EOT_MATCH_WINDOW_S) -> dict[str, float | None]:
    """Greedy in-order matching of end-of-turn positions within ±window."""
    i = j = 0
    deltas: list[float] = []
    missed = extra = 0
    while i < len(ref) and j < len(hyp):
        d = hyp[j] - ref[i]
        if abs(d) <= window_s:
            deltas.append(d * 1000)
            i += 1
            j += 1
        elif d < 0:
            extra += 1
            j += 1
        else:
            missed += 1
            i += 1
    missed += len(ref) - i
    extra += len(hyp) - j
    return {"eot_matched": len(deltas), "eot_missed": missed, "eot_extra": extra, "eot_delta_ms": _median(deltas)}


def stt_leg_metrics(leg: LegTrace) -> dict[str, float | int | None]:
    turns = turn_times(leg)
    return {
        "first_interim_ms": first_interim_ms(leg),
        "first_final_ms": first_final_ms(leg),
        "finalize_ms": finalize_ms(leg),
        "emission_ms": emission_ms(leg),
        "turns": len(turns),
        "eot_latency_ms": _eot_latency_ms(leg, turns),
        "audio_sent_s": round(leg.audio_sent_s, 3),
    }


def stt_pair_metrics(ref: LegTrace, hyp: LegTrace, language: str | None) -> dict[str, object]:
    counts = error_counts(ref.final_text(), hyp.final_text(), language)
    out: dict[str, object] = {
        "err_sub": counts.sub, "err_del": counts.dele, "err_ins": counts.ins,
        "ref_words": counts.ref_words, "hyp_words": counts.hyp_words,
        "wer": counts.wer, "cer": counts.cer,
    }
    if counts.ref_words == 0 and counts.hyp_words:
        out["hyp_only_words"] = counts.hyp_words
    out.update(match_turns(turn_times(ref), turn_times(hyp)))
    return out
