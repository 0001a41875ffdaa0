"""Named transforms and the text buffer, without a network."""

from __future__ import annotations

from gateway.dialects.textbuffer import WordBuffer
from gateway.mapping.transforms.base import SEND_GRADIUM, SessionInfo
from gateway.mapping.transforms.stt_segments import SegmentOptions, SttSegments
from gateway.mapping.transforms.tts_audio import CharTimeline


def test_word_buffer_never_splits_words() -> None:
    b = WordBuffer()
    assert b.push("Hel") is None
    assert b.push("lo wor") == "Hello"
    assert b.push("ld. How ") == "world. How"
    assert b.push("are") is None
    assert b.drain() == "are"
    assert b.drain() is None


def test_char_timeline_spreads_words_and_adds_spaces() -> None:
    t = CharTimeline()
    t.add_word("hi", 0.0, 0.2)
    t.add_word("yo", 0.5, 0.7)
    assert t.chars == ["h", "i", " ", "y", "o"]
    a, b = t.take_until(0.3)
    assert (a, b) == (0, 3)  # the gap's space starts at 0.2
    al = t.alignment(a, b, origin=0.1)
    assert al is not None and al["starts_ms"] == [0, 0, 100] and al["durations_ms"] == [100, 100, 300]
    assert t.take_until(None) == (3, 5)
    assert set(t.alignment(0, 5, 0.0, "ms") or {}) == {"chars", "starts_ms", "durations_ms"}
    assert t.alignment(0, 5, 0.0, "s") == {"chars": t.chars, "starts_s": [0.0, 0.1, 0.2, 0.5, 0.6],
                                           "ends_s": [0.1, 0.2, 0.5, 0.6, 0.7]}


def _step(t: float, p: float) -> dict:
    return {"type": "step", "total_duration_s": t, "vad": [{"horizon_s": h, "inactivity_prob": p}
                                                           for h in (0.5, 1.0, 2.0, 3.0)]}


def test_segments_interim_then_speech_final_on_vad() -> None:
    s = SttSegments(SessionInfo("r", {}), SegmentOptions(interim_results=True, punctuate=True, vad_events=True,
                                                         utterance_end_ms=1000))
    ev = s.on_gradium({"type": "text", "text": "hello", "start_s": 0.1})
    assert [e[0] for e in ev] == ["speech_started", "results"]
    assert ev[1][1]["is_final"] is False and ev[1][1]["transcript"] == "Hello"
    s.on_gradium({"type": "end_text", "stop_s": 0.4})
    ev = s.on_gradium({"type": "text", "text": "world.", "start_s": 0.5})
    assert ev[-1][1]["transcript"] == "Hello world."
    assert s.on_gradium(_step(0.9, 0.1)) == []
    # end of turn: Gradium's last words trail the VAD, so flush first and finalize on `flushed`
    (name, flush), = s.on_gradium(_step(1.0, 0.9))
    assert name == SEND_GRADIUM and flush["type"] == "flush"
    assert s.on_gradium(_step(1.08, 0.95)) == []  # one flush per turn
    (name, final), = s.on_gradium({"type": "flushed", "flush_id": flush["flush_id"]})
    assert name == "results" and final["is_final"] and final["speech_final"] and not final["from_finalize"]
    assert [w["text"] for w in final["words"]] == ["hello", "world"]
    assert [w["punctuated"] for w in final["words"]] == ["Hello", "world."]
    ev = s.on_gradium(_step(2.2, 0.95))
    assert ev and ev[0][0] == "utterance_end"


def test_segments_finalize_answers_even_when_empty() -> None:
    s = SttSegments(SessionInfo("r", {}), SegmentOptions())
    (name, f), = s.on_gradium({"type": "flushed", "flush_id": 1})
    assert name == "results" and f["from_finalize"] and f["is_final"] and f["transcript"] == ""
    ev = s.on_gradium({"type": "end_of_stream"})
    assert [e[0] for e in ev] == ["metadata"]


def test_stt_segments_vad_horizon_follows_the_list_it_is_given() -> None:
    """The nearest horizon's index is remembered between steps, and looked for again when the list changes."""
    s = SttSegments(SessionInfo("r", {}), SegmentOptions(vad_horizon_s=0.5))

    def read(vad: list[dict[str, float]]) -> float | None:  # the transform's reader (`protocol.Inactivity`)
        return s.inactivity({"type": "step", "vad": vad})

    a = [{"horizon_s": 0.25, "inactivity_prob": 0.1}, {"horizon_s": 0.5, "inactivity_prob": 0.7}]
    assert read(a) == 0.7
    assert read([{**a[0]}, {"horizon_s": 0.5, "inactivity_prob": 0.2}]) == 0.2
    b = [{"horizon_s": 0.5, "inactivity_prob": 0.9}, {"horizon_s": 2.0, "inactivity_prob": 0.1}]
    assert read(b) == 0.9
    assert read([{"horizon_s": 0.4, "inactivity_prob": 0.3}]) == 0.3
    assert read([]) is None  # no VAD: the transform reads it as 0.0 (not the end of a turn)
