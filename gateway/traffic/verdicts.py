"""Aggregate statistics over stored pair rows and Diffy-style verdicts against the noise floor.

Diffy compares a candidate's differences with the differences between two copies of the baseline
("noise") and flags a metric only when `raw - noise > absolute threshold` and `raw - noise > relative
threshold * noise` (traffic.md §5.4). Rows are the dicts `compare_pair` produces (or read back from the
store), so everything here works the same on live rows and on a report over a database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Threshold:
    absolute: float
    relative: float


# WER, first output (TTFA) and duration are traffic.md's defaults; LUFS and end-of-turn are ours (1 dB is about the
# smallest loudness step listeners notice; 100 ms of turn-taking is below conversational gaps).
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "wer": Threshold(0.02, 0.5),
    "first_output_ms": Threshold(50.0, 0.5),  # TTFA (TTS) or first final (STT)
    "duration": Threshold(0.1, 0.5),
    "lufs": Threshold(1.0, 0.5),
    "eot_ms": Threshold(100.0, 0.5),
}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def first_output_delta_ms(row: Row) -> float | None:
    """Shadow minus primary time to first output (TTFA for TTS, first final for STT); None when lagging."""
    if "lag_excluded" in (row.get("flags") or []):
        return None
    p, s = (("ttfa_ms_p", "ttfa_ms_s") if row.get("kind") == "tts" else ("first_final_ms_p", "first_final_ms_s"))
    a, b = _num(row.get(p)), _num(row.get(s))
    return b - a if a is not None and b is not None else None


def candidate_delta_ms(row: Row) -> float | None:
    """Hypothesis minus reference first output: positive means the candidate is slower."""
    d = first_output_delta_ms(row)
    if d is None:
        return None
    ref_is_primary = (row.get("metrics") or {}).get("reference", "p") == "p"
    return d if ref_is_primary else -d


# metric name -> per-row value whose mean is compared with the noise pairs' mean
METRIC_VALUES: dict[str, Callable[[Row], float | None]] = {
    "wer": lambda r: _num(r.get("wer")),
    "first_output_ms": lambda r: None if (d := first_output_delta_ms(r)) is None else abs(d),
    "duration": lambda r: abs(math.log(x)) if (x := _num(r.get("duration_ratio"))) and x > 0 else None,
    "lufs": lambda r: None if (x := _num(r.get("lufs_delta"))) is None else abs(x),
    "eot_ms": lambda r: None if (x := _num((r.get("metrics") or {}).get("eot_delta_ms"))) is None else abs(x),
}


def values(rows: Iterable[Row], fn: Callable[[Row], float | None]) -> list[float]:
    return [v for r in rows if (v := fn(r)) is not None]


def pooled_wer(rows: Sequence[Row]) -> float | None:
    """ΣE / ΣN over pairs (errors include insertions against empty references)."""
    errors = sum(int(r.get("err_sub") or 0) + int(r.get("err_del") or 0) + int(r.get("err_ins") or 0) for r in rows
                 if r.get("err_sub") is not None)
    words = sum(int(r.get("ref_words") or 0) for r in rows if r.get("err_sub") is not None)
    return errors / words if words else None


def quantile(xs: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(xs, dtype=float), q)) if len(xs) else None


BOOTSTRAP_N = 400
_CHUNK_CELLS = 4_000_000  # resampled values held at once (32 MB of float64)


def _bootstrap(columns: Sequence[np.ndarray], stat: Callable[..., np.ndarray], n: int, seed: int
               ) -> tuple[float, float] | None:
    size = len(columns[0])
    if size < 2:
        return None
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // size)
    stats: list[np.ndarray] = []
    for start in range(0, n, per_chunk):
        idx = rng.integers(0, size, size=(min(per_chunk, n - start), size))
        stats.append(stat(*(c[idx] for c in columns)))
    flat = np.concatenate(stats)
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return None
    lo, hi = np.quantile(flat, [0.025, 0.975])
    return float(lo), float(hi)


def bootstrap_pooled_wer(rows: Sequence[Row], n: int = BOOTSTRAP_N, seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the pooled WER over pairs resampled with replacement (seeded: reports reproduce)."""
    scored = [r for r in rows if r.get("err_sub") is not None]
    errors = np.array([int(r.get("err_sub") or 0) + int(r.get("err_del") or 0) + int(r.get("err_ins") or 0)
                       for r in scored], dtype=float)
    words = np.array([int(r.get("ref_words") or 0) for r in scored], dtype=float)

    def ratio(e: np.ndarray, w: np.ndarray) -> np.ndarray:
        tot = w.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(tot > 0, e.sum(axis=1) / np.where(tot > 0, tot, 1), np.nan)

    return _bootstrap((errors, words), ratio, n, seed)


def bootstrap_median(xs: Sequence[float], n: int = BOOTSTRAP_N, seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the median of `xs` (e.g. paired latency deltas)."""
    return _bootstrap((np.asarray(xs, dtype=float),), lambda a: np.median(a, axis=1), n, seed)


def median_stat(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


@dataclass(frozen=True, slots=True)
class Verdict:
    metric: str
    raw: float | None
    noise: float | None
    candidates: int
    noise_pairs: int
    flagged: bool

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "raw": self.raw, "noise": self.noise, "candidates": self.candidates,
                "noise_pairs": self.noise_pairs, "flagged": self.flagged}


def verdicts(rows: Sequence[Row], thresholds: dict[str, Threshold] | None = None) -> list[Verdict]:
    """One verdict per metric over completed rows of one route; without noise pairs, noise counts as 0."""
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    done = [r for r in rows if r.get("outcome") == "completed"]
    cands = [r for r in done if r.get("pair_kind") != "noise"]
    noise = [r for r in done if r.get("pair_kind") == "noise"]
    out = []
    for name, fn in METRIC_VALUES.items():
        cv, nv = values(cands, fn), values(noise, fn)
        if not cv:
            continue
        raw = float(np.mean(cv))
        base = float(np.mean(nv)) if nv else 0.0
        t = th[name]
        flagged = raw - base > t.absolute and raw - base > t.relative * base
        out.append(Verdict(name, raw, float(np.mean(nv)) if nv else None, len(cv), len(nv), flagged))
    return out
