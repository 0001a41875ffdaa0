"""`bench/frames.py` (bench/README.md, "Cost per frame") runs every scenario against the gateway and a stub
Gradium, each session checking that every frame came through."""

from __future__ import annotations

from tests.bench_scripts import load


async def test_every_scenario_runs_and_counts_its_frames() -> None:
    frames = load("frames")
    results = await frames.measure(list(frames.SCENARIOS), 2, 6, 1, 1, None)
    assert set(results) == set(frames.SCENARIOS) == {"tts_rest", "tts_ws", "cartesia_ws", "stt_ws", "stt_in"}
    assert all(set(r) == {"us_per_frame", "us_min", "us_max"} for r in results.values())
