"""`bench/tts_cost.py` (bench/README.md, "An ElevenLabs stream-input session's cost") runs its two phases against a
gateway process of its own, every full session checking its audio; here with process CPU (`--tool cpu`), not
valgrind."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.bench_scripts import load


async def test_empty_and_full_sessions_split_into_per_session_and_per_frame(tmp_path: Path) -> None:
    tts_cost = load("tts_cost")
    args = argparse.Namespace(sessions=2, first_audio_ms=0.0, tts_speed=50.0, log_level="warning", tool="cpu",
                              annotate=None, concurrency=1)
    r = await tts_cost.run(args, tmp_path)
    assert r["frames"] > 10 and r["per_session"] >= 0 and r["full_session"] >= r["per_session"]
    assert 0 <= r["sys_share"] <= 1
