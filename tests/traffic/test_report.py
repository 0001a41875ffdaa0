"""`build_report` and its table/json/csv forms over rows from the real comparator."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from gateway.traffic.report import build_report, parse_since, render
from gateway.traffic.verdicts import pooled_wer

from .shadow_rows import make_rows

NOW = 1_790_000_000.0


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [r for r, _ in make_rows(now=NOW)]


def test_groups_per_route_and_primary_with_noise_pairs_inside(rows: list[dict]) -> None:
    rep = build_report(rows, now=NOW)
    keys = [(g["provider"], g["route"], g["primary"]) for g in rep["groups"]]
    assert keys == [("deepgram", "listen_live", "gradium"), ("elevenlabs", "tts_ws", "legacy")]
    stt, tts = rep["groups"]
    assert stt["pairs"] == 60 and stt["noise_pairs"] == 12 and stt["outcomes"]["dropped_overflow"] == 4
    assert stt["candidate_target"] == "legacy" and tts["candidate_target"] == "gradium"
    assert tts["outcomes"] == {"completed": 23, "shadow_error": 1}


def test_stt_figures_match_the_rows(rows: list[dict]) -> None:
    stt = build_report(rows, now=NOW)["groups"][0]
    cands = [r for r in rows if r["kind"] == "stt" and r["pair_kind"] == "candidate" and r["outcome"] == "completed"]
    assert stt["stt"]["pooled_wer"] == pytest.approx(
        sum(r["err_sub"] + r["err_del"] + r["err_ins"] for r in cands) / sum(r["ref_words"] for r in cands))
    assert stt["stt"]["pooled_wer"] == pytest.approx(pooled_wer(cands))
    lo, hi = stt["stt"]["pooled_wer_ci"]
    assert lo <= stt["stt"]["pooled_wer"] <= hi
    assert stt["stt"]["noise_pooled_wer"] == 0.0
    assert sum(b["count"] for b in stt["hist"]["wer"]["candidate"]) == len(cands)
    assert stt["stt"]["turns"]["eot_matched"] == len(cands)
    assert next(v for v in stt["verdicts"] if v["metric"] == "wer")["flagged"]  # ~7 % vs a perfect noise floor
    assert [d["day"] for d in stt["daily"]] == sorted(d["day"] for d in stt["daily"]) and len(stt["daily"]) == 4
    assert stt["worst"][0]["wer"] == max(r["wer"] for r in cands)


def test_tts_figures(rows: list[dict]) -> None:
    tts = build_report(rows, now=NOW)["groups"][1]
    ratios = sorted(r["duration_ratio"] for r in rows if r["kind"] == "tts" and r["outcome"] == "completed")
    assert tts["tts"]["duration_ratio"]["p50"] == pytest.approx(ratios[len(ratios) // 2], abs=0.1)
    assert tts["tts"]["format_mismatches"] == 0
    assert sum(b["count"] for b in tts["hist"]["duration_ratio"]) == len(ratios)


def test_filters_and_since(rows: list[dict]) -> None:
    assert build_report(rows, now=NOW, provider="deepgram")["pairs"] == 60
    assert build_report(rows, now=NOW, tenant="nobody")["groups"] == []
    recent = build_report(rows, now=NOW, since_s=parse_since("24h"))
    assert recent["pairs"] == 21  # the last day's 15 STT + 6 TTS pairs
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


def test_formats(rows: list[dict]) -> None:
    rep = build_report(rows, now=NOW)
    data = json.loads(render(rep, "json"))
    assert data["pairs"] == 84 and len(data["groups"]) == 2
    table = render(rep, "table")
    assert "deepgram listen_live (stt) gradium -> legacy: WER" in table
    lines = list(csv.DictReader(io.StringIO(render(rep, "csv"))))
    assert [line["route"] for line in lines] == ["listen_live", "tts_ws"]
    assert float(lines[0]["pooled_wer"]) == pytest.approx(rep["groups"][0]["stt"]["pooled_wer"])
    html = render(rep, "html")
    assert html.startswith("<!doctype html>") and "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    with pytest.raises(ValueError):
        render(rep, "pdf")


def test_word_diff_when_text_is_stored() -> None:
    row = {"pair_id": "x", "kind": "stt", "outcome": "completed", "pair_kind": "candidate", "wer": 0.5,
           "err_sub": 1, "err_del": 0, "err_ins": 0, "ref_words": 2, "started_at": time.time(),
           "final_text_p": "hello word", "final_text_s": "hello world", "metrics": {"reference": "s"},
           "provider": "deepgram", "route": "listen_live", "primary_target": "gradium", "flags": []}
    worst = build_report([row])["groups"][0]["worst"][0]
    assert worst["word_diff"] == "hello [world→word]"


def test_empty_report() -> None:
    rep = build_report([])
    assert rep["groups"] == [] and "No shadow pairs" in render(rep, "html")
    assert render(rep, "csv").startswith("provider,route")
