"""`bench/load.py`'s TTS socket streams are listeners (bench/README.md, "Realistic load"): the next utterance is
asked for once the last one has played out, so a stream never asks for audio faster than real time."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests import bench_scripts


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = bench_scripts.load("load")
    monkeypatch.setattr(module, "RAMP_S", 0.0)
    return module


@pytest.mark.parametrize("listen", [True, False])
async def test_a_listener_waits_for_its_audio_to_play_out(load: Any, listen: bool) -> None:
    async def utterance(trace: Any) -> dict[str, Any]:  # 0.2 s of audio, all of it at once
        return {"first_ms": 0.0, "audio_s": 0.2, "gaps_ms": [], "underruns": 0}

    side = await load.run_step(utterance, 2, 0.5, None, [], listen=listen)
    if listen:  # per stream: sessions at 0, 0.2, 0.4 s (the last one started before the deadline)
        assert 2 <= len(side.samples) <= 8 and side.stream_s >= 0.2 * len(side.samples)
    else:  # back to back: as many as the loop can run
        assert len(side.samples) > 100


async def test_streams_start_spread_over_the_ramp(load: Any) -> None:
    """Listeners' starts are spread over one utterance cycle (`ramp_s`), so streams are not in phase."""
    starts: list[float] = []

    async def utterance(trace: Any) -> dict[str, Any]:
        starts.append(load.time.perf_counter())
        return {"first_ms": 0.0, "audio_s": 1.0, "gaps_ms": [], "underruns": 0}

    await load.run_step(utterance, 4, 0.0, None, [], listen=True, ramp_s=0.8)
    first = sorted(starts)[:4]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(first)), first  # 0.8 s / 4 streams apart
