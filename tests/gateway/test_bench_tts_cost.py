"""`bench/tts_cost.py` (bench/README.md, "An ElevenLabs stream-input session's cost") runs its two phases against a
gateway process of its own, every full session checking its audio; here with process CPU (`--tool cpu`), not
valgrind."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

TTS_COST = Path(__file__).resolve().parents[2] / "bench" / "tts_cost.py"


async def test_empty_and_full_sessions_split_into_per_session_and_per_frame(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_tts_cost", TTS_COST)
    assert spec is not None and spec.loader is not None
    tts_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tts_cost)
    args = argparse.Namespace(sessions=2, first_audio_ms=0.0, tts_speed=50.0, log_level="warning", tool="cpu",
                              annotate=None)
    r = await tts_cost.run(args, tmp_path)
    assert r["frames"] > 10 and r["per_session"] >= 0 and r["full_session"] >= r["per_session"]
    assert 0 <= r["sys_share"] <= 1
