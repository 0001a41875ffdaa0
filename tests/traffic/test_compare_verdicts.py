"""Diffy-style verdicts and pooled statistics over rows."""

from __future__ import annotations

import pytest

from gateway.traffic.verdicts import (
    Threshold,
    bootstrap_median,
    bootstrap_pooled_wer,
    candidate_delta_ms,
    pooled_wer,
    verdicts,
)


def _stt(wer_errors: int, words: int = 10, kind: str = "candidate", p: float = 300.0, s: float = 320.0) -> dict:
    return {"kind": "stt", "outcome": "completed", "pair_kind": kind, "err_sub": wer_errors, "err_del": 0,
            "err_ins": 0, "ref_words": words, "wer": wer_errors / words if words else 0.0, "first_final_ms_p": p,
            "first_final_ms_s": s, "flags": [], "metrics": {"reference": "s"}}


def test_pooled_wer_weights_by_reference_words() -> None:
    rows = [_stt(1, 10), _stt(0, 90)]
    assert pooled_wer(rows) == pytest.approx(0.01)
    assert pooled_wer([]) is None


def test_flagged_only_above_noise_by_both_thresholds() -> None:
    noisy = [_stt(1, 10, "noise") for _ in range(5)]             # noise WER 0.10
    close = [_stt(1, 10) for _ in range(5)] + [_stt(2, 10)]       # raw ~0.117: within 50 % of noise
    assert not next(v for v in verdicts(close + noisy) if v.metric == "wer").flagged
    bad = [_stt(3, 10) for _ in range(5)]                         # raw 0.30
    v = next(v for v in verdicts(bad + noisy) if v.metric == "wer")
    assert v.flagged and v.raw == pytest.approx(0.3) and v.noise == pytest.approx(0.1) and v.noise_pairs == 5


def test_without_noise_pairs_the_absolute_threshold_decides() -> None:
    assert next(v for v in verdicts([_stt(1, 100)]) if v.metric == "wer").flagged is False
    assert next(v for v in verdicts([_stt(5, 100)]) if v.metric == "wer").flagged is True
    custom = {"wer": Threshold(0.1, 0.5)}
    assert next(v for v in verdicts([_stt(5, 100)], custom) if v.metric == "wer").flagged is False


def test_latency_verdict_uses_first_output_deltas_and_skips_lagging_pairs() -> None:
    slow = [_stt(0, 10, p=300, s=420) for _ in range(4)]
    v = next(v for v in verdicts(slow) if v.metric == "first_output_ms")
    assert v.flagged and v.raw == pytest.approx(120)
    lagging = [{**r, "flags": ["lag_excluded"]} for r in slow]
    assert all(v.metric != "first_output_ms" for v in verdicts(lagging))
    # the reference is the shadow (legacy) leg here: the candidate (primary) was 120 ms faster
    assert candidate_delta_ms(slow[0]) == pytest.approx(-120)


def test_incomplete_pairs_do_not_vote() -> None:
    rows = [{**_stt(9, 10), "outcome": "dropped_overflow"}]
    assert verdicts(rows) == []


def test_bootstrap_interval_brackets_the_pooled_value() -> None:
    rows = [_stt(i % 3, 10) for i in range(40)]
    lo, hi = bootstrap_pooled_wer(rows)  # type: ignore[misc]
    assert lo <= pooled_wer(rows) <= hi and hi - lo < 0.1
    assert bootstrap_pooled_wer(rows[:1]) is None
    assert bootstrap_pooled_wer(rows) == bootstrap_pooled_wer(rows)  # seeded
    assert bootstrap_pooled_wer([_stt(0, 0), _stt(0, 0)]) is None  # no reference words at all


def test_bootstrap_median_is_chunked_for_large_inputs() -> None:
    xs = list(range(-50_000, 50_001))
    lo, hi = bootstrap_median(xs, n=50)  # type: ignore[misc]
    assert lo <= 0 <= hi and hi - lo < 2_000
    assert bootstrap_median([5.0]) is None
