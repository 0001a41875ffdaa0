"""Noise pairs (traffic.md §5.4): a sampled unit also gets a same-side copy, stored as `pair_kind=noise`, and
the report's noise floor and verdicts are computed from those rows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.dialects.common import METRICS
from gateway.traffic.page import render_page
from gateway.traffic.report import build_report
from gateway.traffic.router import TRAFFIC
from gateway.traffic.settings import ShadowRule
from tests.standin import StandIn
from tests.traffic.conftest import Front
from tests.traffic.test_shadow import auth_with_shadow_keys, finished, live, speak, stored_rows


def _shadow(tmp_path: Path, **rule: Any) -> dict[str, Any]:
    return {"enabled": True, "rules": [{"match": {"tenant": "acme"}, "rate": 1, "noise_rate": 1, **rule}],
            "store": {"path": str(tmp_path / "shadow.db")}}


def _by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert len(rows) == 2, rows
    return {r["pair_kind"]: {**r, "flags": orjson.loads(r["flags"]), "metrics": orjson.loads(r["metrics"])}
            for r in rows}


@pytest.mark.parametrize("target, copy_side", [("primary", "gradium"), ("candidate", "legacy")])
async def test_stt_noise_copy_is_stored_and_fills_the_report(standin: StandIn, front: Front, tmp_path: Path,
                                                             target: str, copy_side: str) -> None:
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}},
                     shadow=_shadow(tmp_path, noise_target=target)) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]
        await live(gw)
        outcomes = await finished(gw, 2)
        shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
        rows = _by_kind(await asyncio.to_thread(stored_rows, gw))
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
        spent = {side: await shadow.budget.spent("acme", side, "stt_seconds") for side in ("gradium", "legacy")}
    assert sorted(o["pair_kind"] for o in outcomes) == ["candidate", "noise"]
    cand, noise = rows["candidate"], rows["noise"]
    assert (cand["primary_target"], cand["shadow_target"]) == ("gradium", "legacy")
    # grouped with the unit's primary; the copy is of the primary's side, or of the candidate's
    assert (noise["primary_target"], noise["shadow_target"]) == ("gradium", copy_side)
    assert noise["outcome"] == "completed" and noise["pair_id"] != cand["pair_id"]
    assert noise["wer"] == 0 and noise["ref_words"] == cand["ref_words"] > 0  # the emulator hears its tones alike
    assert noise["emission_ms_p"] is not None and noise["emission_ms_s"] is not None
    assert noise["cost_stt_seconds"] > 3 and noise["sticky_reason"] == "credential"
    if target == "primary":  # the copy's reference is the primary session itself
        assert noise["metrics"]["legs"]["p"]["leg_id"] == cand["metrics"]["legs"]["p"]["leg_id"]
    else:  # two vendor sockets: the candidate leg is the reference of the copy
        assert noise["metrics"]["legs"]["p"]["leg_id"] == cand["metrics"]["legs"]["s"]["leg_id"]
    # the copy draws on the same daily budgets as the candidate leg
    expected = {"legacy": cand["cost_stt_seconds"], "gradium": 0.0}
    expected[copy_side] += noise["cost_stt_seconds"]
    assert spent == pytest.approx(expected, abs=0.01)
    assert reg.get_sample_value("gateway_shadow_legs_total", {
        "provider": "deepgram", "route": "listen_live", "shadow_target": copy_side, "pair_kind": "noise",
        "outcome": "completed"}) == 1
    # the report: a noise floor, verdicts against it, and the WER histogram's noise series
    report = build_report(list(rows.values()))
    [group] = report["groups"]
    assert group["candidates"] == 1 and group["noise_pairs"] == 1
    assert group["stt"]["noise_pooled_wer"] == 0.0
    wer = next(v for v in group["verdicts"] if v["metric"] == "wer")
    assert wer["noise"] == 0.0 and wer["noise_pairs"] == 1 and not wer["flagged"]
    assert sum(b["count"] for b in group["hist"]["wer"]["noise"]) == 1
    # the admin page's WER histogram draws the noise pair (WER 0: the first bin) over the candidate
    assert 'data-series="noise" data-bin="0" data-count="1"' in render_page(report)


async def test_tts_noise_copy_of_the_candidate_side(standin: StandIn, front: Front, tmp_path: Path) -> None:
    """A legacy primary, a Gradium candidate and a second Gradium copy: Gradium measured against itself."""
    async with front(auth=auth_with_shadow_keys(), shadow=_shadow(tmp_path, noise_target="candidate")) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]
        await speak(gw)
        await finished(gw, 2)
        rows = _by_kind(await asyncio.to_thread(stored_rows, gw))
    noise = rows["noise"]
    assert (noise["primary_target"], noise["shadow_target"], noise["outcome"]) == ("legacy", "gradium", "completed")
    assert noise["format_match"] == 1 and noise["duration_ratio"] == pytest.approx(1.0, abs=0.05)
    assert noise["ttfa_ms_p"] is not None and noise["ttfa_ms_s"] is not None
    assert noise["cost_tts_chars"] == rows["candidate"]["cost_tts_chars"] > 0
    [group] = build_report(list(rows.values()))["groups"]
    duration = next(v for v in group["verdicts"] if v["metric"] == "duration")
    assert duration["noise_pairs"] == 1 and duration["noise"] is not None


async def test_noise_copy_refused_by_the_concurrency_cap_leaves_the_candidate(standin: StandIn, front: Front,
                                                                              tmp_path: Path) -> None:
    shadow = _shadow(tmp_path, noise_target="candidate", budget={"max_concurrent": 1})
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}}, shadow=shadow) as gw:
        gw.db = tmp_path / "shadow.db"  # type: ignore[attr-defined]
        await live(gw)
        [outcome] = await finished(gw, 1)
        rows = await asyncio.to_thread(stored_rows, gw)
        reg = gw.front[METRICS].registry  # type: ignore[attr-defined]
    assert outcome["pair_kind"] == "candidate" and [r["pair_kind"] for r in rows] == ["candidate"]
    assert reg.get_sample_value("gateway_shadow_legs_total", {
        "provider": "deepgram", "route": "listen_live", "shadow_target": "legacy", "pair_kind": "noise",
        "outcome": "dropped_concurrency"}) == 1


def test_noise_is_off_by_default() -> None:
    assert ShadowRule().noise_rate == 0 and ShadowRule().noise_target == "primary"
    with pytest.raises(ValueError):
        ShadowRule(noise_rate=1.5)
