"""Synthetic shadow pairs run through the real comparator, for report, CLI and page tests."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.audio.formats import pcm16
from gateway.traffic.compare import compare_pair
from gateway.traffic.store import SqliteStore
from gateway.traffic.trace import PairTrace, Word

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "bright", "stars",
         "shine", "above", "quiet", "hills"]
DAY = 86400.0


def _stt_pair(rng: random.Random, started_at: float, noise: bool, errors: int) -> PairTrace:
    pair = PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt", transport="ws",
                          primary_side="gradium", shadow_side="gradium" if noise else "legacy",
                          started_at=started_at)
    ref = [rng.choice(WORDS) for _ in range(20)]
    hyp = list(ref)
    for i in rng.sample(range(20), errors):
        hyp[i] = "zebra"
    first_p, first_s = rng.uniform(200, 400), rng.uniform(200, 400)
    for leg, words, first in ((pair.primary, hyp, first_p), (pair.shadow, ref, first_s)):
        for i in range(150):
            leg.sent_audio(640, 0.02, t=i * 20.0)
        leg.final(" ".join(words), [Word(w, i * 0.1, i * 0.1 + 0.08) for i, w in enumerate(words)], t=first)
        leg.turn("end", audio_end_s=2.5, t=first + 50)
        leg.close(1000)
    pair.cost_stt_seconds = 3.0
    return pair


def _tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()


def _tts_pair(rng: random.Random, started_at: float, ratio: float) -> PairTrace:
    pair = PairTrace.open(tenant="acme", provider="elevenlabs", route="tts_ws", kind="tts", transport="ws",
                          primary_side="legacy", shadow_side="gradium", audio_format=pcm16(16000),
                          started_at=started_at)
    pair.cost_tts_chars = 40
    for leg, secs, ttfa in ((pair.primary, 1.0, rng.uniform(150, 250)),
                            (pair.shadow, ratio, rng.uniform(100, 300))):
        leg.sent_text(40, t=0.0)
        leg.audio(_tone(secs), t=ttfa)
        leg.close(1000)
    return pair


def make_rows(seed: int = 7, now: float | None = None, days: int = 4) -> list[tuple[dict[str, Any], list]]:
    """About 60 STT and 24 TTS rows over `days` days, a few dropped, with noise pairs."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    out = []
    for d in range(days):
        base = now - (days - 1 - d) * DAY - 3600
        for i in range(15):
            noise = i % 5 == 0
            pair = _stt_pair(rng, base + i, noise, rng.choice([0, 0]) if noise else rng.choice([0, 1, 1, 2, 4]))
            if i == 7:
                pair.outcome = "dropped_overflow"
            out.append(pair)
        for i in range(6):
            pair = _tts_pair(rng, base + 100 + i, rng.choice([0.9, 1.0, 1.05, 1.2]))
            if i == 5 and d == 0:
                pair.outcome = "shadow_error"
            out.append(pair)
    result = []
    for pair in out:
        c = compare_pair(pair)
        result.append((c.row, c.units))
    return result


def fill_store(path: Path, rows: list[tuple[dict[str, Any], list]]) -> None:
    store = SqliteStore(path, flush_interval_s=0.05).start()
    for row, units in rows:
        assert store.put(row, units)
    assert store.flush(30)
    store.close()
