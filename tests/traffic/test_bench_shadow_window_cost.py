"""`python bench/shadow_window_cost.py` (README, "Benchmark"; bench/README.md): what a gateway runs inside its
primaries' windows, a gateway per shadow rate against the stand-in vendor, read from the probe in each gateway."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.bench_scripts import run


def test_each_rate_has_its_windows_and_only_rate_1_runs_shadow_work(tmp_path: Path) -> None:
    r = run("shadow_window_cost.py", "--sessions", "3", "--warmup", "1", "--workers", "1", "--keep", str(tmp_path))
    start = r.stdout.index("{")
    results, _ = json.JSONDecoder().raw_decode(r.stdout[start:])
    for rate in ("rate0", "rate1"):
        assert results[rate]["n"] == 3 and results[rate]["thread"]["mean"] > 0, results[rate]
        assert results[rate]["gc_all"], "collections by generation are counted over the run"
        windows = json.loads((tmp_path / f"{rate}.windows.json").read_text())
        assert len(windows) == 3 and all(w["thread_ns"] > 0 for w in windows)
        # every session's time to first audio is cut at the gateway's reads and writes, on one clock
        segments = results[rate]["ttfa_segments_ms"]
        assert segments["n"] == 3, segments
        assert segments["to_gradium_audio"]["p50"] > 0 and segments["gateway_out"]["p50"] >= 0, segments
        assert segments["to_gateway"]["p50"] > 0, segments
    # a shadow leg is made, and the primary's frames offered to it, only where shadowing samples the unit
    assert results["rate1"]["leg_init"]["windows_hit"] == 3 and results["rate1"][
        "addon.ShadowAddon.client_frame"]["calls"] > 0
    assert "leg_init" not in results["rate0"]
    # without `--apart` (tests/traffic/test_bench_apart.py) every process keeps every core
    cpus = sorted(os.sched_getaffinity(0))
    assert all(v == cpus for v in results["placement"].values()), results["placement"]
