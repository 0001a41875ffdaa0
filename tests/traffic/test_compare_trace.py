"""The trace model stays bounded and answers the comparator's questions."""

from __future__ import annotations

import time
import uuid

from gateway.traffic.trace import LegTrace, PairTrace, TraceLimits, Word


def _pair(primary: str = "gradium", shadow: str = "legacy", **kw: object) -> PairTrace:
    return PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt", transport="ws",
                          primary_side=primary, shadow_side=shadow, **kw)  # type: ignore[arg-type]


def test_pair_ids_are_uuid7_and_time_ordered() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [_pair().pair_id for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 50
    assert ids == sorted(ids)  # strictly increasing, even within one millisecond
    assert int(ids[0].replace("-", "")[:12], 16) >= before_ms  # the first 48 bits: Unix time in ms


def test_reference_is_legacy_for_candidates_and_primary_for_noise() -> None:
    p = _pair("gradium", "legacy")
    assert p.pair_kind == "candidate" and p.reference is p.shadow and p.hypothesis is p.primary
    p = _pair("legacy", "gradium")
    assert p.reference is p.primary and p.hypothesis is p.shadow
    p = _pair("gradium", "gradium")
    assert p.pair_kind == "noise" and p.reference is p.primary


def test_audio_and_events_are_capped_and_flagged() -> None:
    leg = LegTrace("gradium", "primary", "elevenlabs", "tts_ws", "tts", "ws",
                   limits=TraceLimits(max_events=10, max_audio_bytes=100))
    for _ in range(30):
        leg.audio(b"x" * 8, ctx="a")
    assert len(leg.outputs) == 10 and leg.output_count == 30
    assert len(leg.audio_bytes("a")) == 100 and leg.audio_bytes_total == 240
    assert leg.audio_truncated and leg.events_truncated


def test_text_is_capped() -> None:
    leg = LegTrace("legacy", "shadow", "deepgram", "listen_live", "stt", "ws", limits=TraceLimits(max_text_chars=12))
    leg.final("hello world")
    leg.final("and more words")
    assert "".join(o.text for o in leg.finals()) == "hello worlda"
    assert leg.text_truncated


def test_send_points_thin_but_cover_the_whole_unit() -> None:
    leg = LegTrace("gradium", "primary", "deepgram", "listen_live", "stt", "ws", limits=TraceLimits(max_send_points=64))
    for i in range(1000):
        leg.sent_audio(320, 0.01, t=float(i))
    assert len(leg.send_points) <= 64 and leg.sends_thinned
    assert leg.t_sent_at_offset(9.99) is not None
    assert leg.t_sent_at_offset(5.0) is not None and abs(leg.t_sent_at_offset(5.0) - 499) <= 32
    assert leg.t_sent_at_offset(11.0) is None


def test_first_output_ignores_empty_transcripts_and_turns() -> None:
    leg = LegTrace("gradium", "primary", "deepgram", "listen_live", "stt", "ws")
    leg.interim("", t=1.0)
    leg.turn("end", t=2.0)
    leg.final("hi", [Word("hi", 0.0, 0.2)], t=3.0)
    assert leg.first_output_ms == 3.0
