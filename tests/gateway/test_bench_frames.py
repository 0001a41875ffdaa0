"""`bench/frames.py` (bench/README.md, "Cost per frame") runs every scenario against the gateway and a stub
Gradium, each session checking that every frame came through."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FRAMES = Path(__file__).resolve().parents[2] / "bench" / "frames.py"


async def test_every_scenario_runs_and_counts_its_frames() -> None:
    spec = importlib.util.spec_from_file_location("bench_frames", FRAMES)
    assert spec is not None and spec.loader is not None
    frames = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frames)
    results = await frames.measure(list(frames.SCENARIOS), 2, 6, 1, 1, None)
    assert set(results) == set(frames.SCENARIOS) == {"tts_rest", "tts_ws", "cartesia_ws", "stt_ws", "stt_in"}
    assert all(set(r) == {"us_per_frame", "us_min", "us_max"} for r in results.values())
