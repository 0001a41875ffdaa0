"""`bench/stt_cost.py` (bench/README.md, "A live STT session's cost") runs its two phases of Deepgram live and
ElevenLabs realtime sessions against a gateway process of its own, every full session checking its transcript;
here with process CPU (`--tool cpu`), not valgrind."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.bench_scripts import load


async def test_both_paths_run_their_empty_and_full_sessions(tmp_path: Path) -> None:
    stt_cost = load("stt_cost")
    args = argparse.Namespace(paths=["dg_live", "el_stt"], sessions=3, pace_ms=2.0, log_level="warning",
                              tool="cpu", annotate=None, concurrency=2)
    results = await stt_cost.run(args, tmp_path)
    assert set(results) == {"dg_live", "el_stt"}
    for r in results.values():
        assert r["frames"] == 37 and r["per_session"] >= 0 and r["full_session"] >= 0 and 0 <= r["sys_share"] <= 1
        assert r["sleeps_per_frame"] >= 0  # the loop's sleeps (voluntary context switches) per frame
