"""`bench/traffic.py`'s shadow rows print each ratio with a 95 % bootstrap interval: how far the same code's
p99 ratio may land from run to run with that many sessions (the summary reads it next to the target)."""

from __future__ import annotations

import numpy as np

from tests.bench_scripts import load


def test_the_interval_holds_one_for_alike_sides_and_the_true_ratio_for_shifted_ones() -> None:
    traffic = load("traffic")
    rng = np.random.default_rng(1)
    base = list(rng.gamma(4.0, 0.6, 1000))
    alike = list(rng.gamma(4.0, 0.6, 1000))
    slower = [x * 1.3 for x in rng.gamma(4.0, 0.6, 1000)]
    lo, hi = traffic.ratio_interval(base, alike, 99)
    assert lo < 1.0 < hi
    assert hi - lo < 0.5  # 1,000 sessions pin a p99 ratio to within tenths, not units
    lo, hi = traffic.ratio_interval(base, slower, 50)
    assert 1.0 < lo < 1.3 < hi
    assert traffic.ratio_interval([1.0], alike, 99) is None  # too few sessions to say


def test_the_summary_prints_the_intervals() -> None:
    traffic = load("traffic")
    side = {"p50": 2.0, "p99": 5.0, "gateway_cpu_ms": 3.5, "after": {"rate0": {"p99": 5.0}, "rate1": {"p99": 5.2}}}
    row = {"rate0": side, "rate1": side, "ratio_p50": 1.0, "ratio_p99": 1.0, "ratio_p50_ci95": [0.98, 1.02],
           "ratio_p99_ci95": [0.95, 1.06]}
    text = traffic.summary({"shadow_tts_ws": row})
    assert "ratio p50 1.0 [0.98, 1.02]  p99 1.0 [0.95, 1.06]" in text
