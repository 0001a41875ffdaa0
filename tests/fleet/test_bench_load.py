"""bench/load.py runs end to end (the smallest step), so the realistic benchmark cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fleet.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]


def test_load_benchmark_smallest_step(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--paths", "rest_mp3,dg_live", "--max-streams", "1",
         "--duration", "1", "--workers", "1", "--stt-seconds", "5", "--json", str(out)],
        env=clean_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    row, stt = report["rows"]
    assert row["path"] == "rest_mp3" and row["streams"] == 1
    for side in ("direct", "gateway"):
        assert row[side]["sessions_ok"] >= 1 and row[side]["sessions_failed"] == 0, row[side]
        assert stt[side]["sessions_ok"] >= 1 and stt[side]["sessions_failed"] == 0, stt[side]
    # dg_live below its first step: one step at --max-streams, sessions of two clips (--stt-seconds 5)
    assert stt["path"] == "dg_live" and stt["streams"] == 1 and 5.5 < stt["stt_session_s"] < 6.0
    assert stt["gateway"]["gw_cpu_ms_per_session"] > 0 and "gw_cpu_us_per_frame" in stt["gateway"]
    assert "| dg_live | 1 |" in r.stdout and "ms/stream-s for 30 s sessions" in r.stdout
    assert row["direct"]["first_p50"] >= 100  # the emulator's per-request first-audio delay
    assert "headline" in r.stdout and "| rest_mp3 | 1 |" in r.stdout
    assert report["lame_capacity"]["lame_x_realtime_per_core"] > 1


def test_scaling_benchmark_smallest_ladder(tmp_path: Path) -> None:
    """bench/scaling.py's ladder and report, without the CPU cgroup (which needs root)."""
    out = tmp_path / "scaling.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scaling.py"), "--paths", "dg_live", "--max-streams", "2",
         "--duration", "1", "--core-share", "0", "--json", str(out)],
        env=clean_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())["paths"]["dg_live"]
    for side in ("one_worker", "two_workers"):
        steps = report[side]["steps"]
        # 2 streams keep up unless the machine is very busy; then the ladder steps down, never up.
        assert steps[0]["streams"] == 2 and all(s["streams"] <= 2 for s in steps), steps
        assert steps[0]["gateway"]["sessions_ok"] >= 1 and steps[0]["gateway"]["sessions_failed"] == 0
        assert report[side]["saturated"] == (not steps[0]["keeps_up"])
    assert report["two_workers"]["workers"] == 2
    assert "| dg_live | " in r.stdout and "(whole cores)" in r.stdout
