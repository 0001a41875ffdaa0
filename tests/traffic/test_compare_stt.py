"""STT comparison on synthetic traces: known error counts, normalization, a scripted timing schedule, turns."""

from __future__ import annotations

import pytest

from gateway.traffic.compare import compare_pair
from gateway.traffic.text_metrics import error_counts, match_turns, normalize
from gateway.traffic.trace import LegTrace, PairTrace, Word

CHUNK_S = 0.02


def _pair(primary: str = "gradium", shadow: str = "legacy") -> PairTrace:
    return PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt", transport="ws",
                          primary_side=primary, shadow_side=shadow)  # type: ignore[arg-type]


def _stream(leg: LegTrace, seconds: float, t0: float = 1000.0) -> None:
    """Real-time audio: a 20 ms chunk sent every 20 ms from t0."""
    for i in range(round(seconds / CHUNK_S)):
        leg.sent_audio(640, CHUNK_S, t=t0 + i * CHUNK_S * 1000)


def test_known_substitution_deletion_insertion() -> None:
    c = error_counts("the quick brown fox jumps over the lazy dog", "the quick brown fax jumps over lazy dog today")
    assert (c.sub, c.dele, c.ins, c.ref_words) == (1, 1, 1, 9)
    assert c.wer == pytest.approx(3 / 9)
    assert c.cer is not None and 0 < c.cer < c.wer


@pytest.mark.parametrize(("ref", "hyp"), [
    ("Hello, Mr. Smith!", "hello mister smith"),
    ("It costs twenty-five dollars.", "it costs $25"),
    ("The colour is grey", "the color is gray"),
])
def test_whisper_english_normalization_removes_style_differences(ref: str, hyp: str) -> None:
    assert error_counts(ref, hyp).wer == 0.0


def test_other_languages_use_the_basic_normalizer() -> None:
    assert normalize("Bonjour, le Monde!", "fr") == "bonjour le monde"
    assert error_counts("Bonjour, le Monde!", "bonjour le monde", "fr-FR").wer == 0.0


def test_empty_reference() -> None:
    assert error_counts("", "").wer == 0.0
    c = error_counts("  ", "ghost words")
    assert c.wer is None and c.ins == 2 and c.ref_words == 0


def test_pair_row_counts_errors_against_the_legacy_leg() -> None:
    pair = _pair("gradium", "legacy")
    pair.shadow.final("the cat sat on the mat", t=1)      # legacy = reference
    pair.primary.final("the cat sat on a mat", t=1)       # gradium = hypothesis
    row = compare_pair(pair).row
    assert (row["err_sub"], row["err_del"], row["err_ins"], row["ref_words"]) == (1, 0, 0, 6)
    assert row["wer"] == pytest.approx(1 / 6, abs=1e-4)
    assert row["pair_kind"] == "candidate" and row["metrics"]["reference"] == "s"
    assert "final_text_p" not in row  # text only with store_text


def test_text_is_stored_only_when_asked_and_never_for_privacy_flagged_pairs() -> None:
    pair = _pair()
    pair.primary.final("hello there")
    pair.shadow.final("hello there")
    assert compare_pair(pair, store_text=True).row["final_text_p"] == "hello there"
    pair.privacy = True
    assert "final_text_p" not in compare_pair(pair, store_text=True).row


def test_delta_transcripts_concatenate_verbatim() -> None:
    pair = _pair()
    for leg in (pair.primary, pair.shadow):
        leg.final_joiner = ""
    pair.shadow.final("hel"), pair.shadow.final("lo world")
    pair.primary.final("hello "), pair.primary.final("world")
    assert compare_pair(pair).row["wer"] == 0.0


def test_latencies_on_a_scripted_schedule() -> None:
    pair = _pair()
    leg = pair.primary
    _stream(leg, 3.0, t0=1000.0)  # the chunk ending at audio offset x s is sent at t = 1000 + 1000 * x - 20
    leg.interim("hel", t=1250.0)
    leg.final("hello world", [Word("hello", 0.1, 0.5), Word("world", 0.6, 1.0)], t=2100.0)
    leg.sent_control("finalize", t=3390.0)
    leg.final("again", [Word("again", 2.0, 2.4)], t=3500.0)
    m = compare_pair(pair).row["metrics"]["p"]
    assert m["first_interim_ms"] == 250.0 and m["first_final_ms"] == 1100.0
    assert m["finalize_ms"] == 110.0
    # word ends 0.5 / 1.0 / 2.4 s were sent at 1480 / 1980 / 3380 ms: latencies 620, 120, 120
    assert m["emission_ms"] == pytest.approx(120.0)


def test_turn_matching_greedy_in_order() -> None:
    got = match_turns([1.0, 3.0, 6.0], [1.2, 6.3, 9.0])
    assert got["eot_matched"] == 2 and got["eot_missed"] == 1 and got["eot_extra"] == 1
    assert got["eot_delta_ms"] == pytest.approx(250.0)


def test_turns_without_audio_time_use_the_audio_sent_when_they_arrived() -> None:
    pair = _pair("legacy", "gradium")
    for leg in (pair.primary, pair.shadow):
        _stream(leg, 4.0)
        leg.final("one", [Word("one", 0.2, 0.6)], t=1700.0)
    pair.primary.turn("end", audio_end_s=1.0, t=2100.0)        # reference (legacy primary)
    pair.shadow.turn("end", t=2180.0)                            # 1.2 s of audio sent by then
    row = compare_pair(pair).row
    assert row["metrics"]["eot_matched"] == 1
    assert row["metrics"]["eot_delta_ms"] == pytest.approx(200.0, abs=20.5)
    assert row["metrics"]["p"]["eot_latency_ms"] == pytest.approx(400.0)


def test_noise_pair_compares_the_copy_against_the_primary() -> None:
    pair = _pair("gradium", "gradium")
    pair.primary.final("a b c d")
    pair.shadow.final("a b c")
    row = compare_pair(pair).row
    assert row["pair_kind"] == "noise" and row["err_del"] == 1 and row["metrics"]["reference"] == "p"


def test_lagging_pairs_are_flagged_out_of_latency_statistics() -> None:
    pair = _pair()
    pair.lag_p95_ms = 80.0
    assert "lag_excluded" in compare_pair(pair).row["flags"]
