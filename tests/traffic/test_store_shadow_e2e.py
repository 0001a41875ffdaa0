"""Shadowed sockets end up as compared rows in the store: the recorder hooked to the shadow machinery."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.traffic.admin import SHADOW_RECORDER
from gateway.traffic.compare import LAG_EXCLUDE_MS
from gateway.traffic.router import TRAFFIC
from gateway.traffic.store import load_rows
from tests.conftest import Gateway
from tests.standin import StandIn
from tests.traffic.conftest import Front
from tests.traffic.test_shadow import auth_with_shadow_keys, final_text, finished, live, speak


def _shadow(tmp_path: Path) -> dict[str, Any]:
    return {"enabled": True, "rules": [{"match": {"tenant": "acme"}, "rate": 1}],
            "store": {"path": str(tmp_path / "shadow.db"), "store_text": True}}


def assert_no_flags(row: dict[str, Any]) -> None:
    """No flag but `lag_excluded`, which a busy machine may earn honestly: then the lag must be over the limit."""
    flags = set(row["flags"])
    if "lag_excluded" in flags:
        assert row["lag_p95_ms"] > LAG_EXCLUDE_MS
    assert flags <= {"lag_excluded"}, row["flags"]


async def _rows(gw: Gateway, tmp_path: Path, n: int = 1) -> list[dict[str, Any]]:
    await finished(gw, n)
    recorder = gw.front[SHADOW_RECORDER]  # type: ignore[attr-defined]
    for _ in range(250):
        await asyncio.to_thread(recorder.flush, 5.0)
        store = next(s for s in recorder.sinks if s.sink == "sqlite")
        await asyncio.to_thread(store.flush, 5.0)
        if (tmp_path / "shadow.db").exists() and len(rows := load_rows([str(tmp_path / "shadow.db")])) >= n:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError("no row stored")


async def test_stt_shadow_at_rate_1_stores_one_pair_with_wer_0(standin: StandIn, front: Front,
                                                                tmp_path: Path) -> None:
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}},
                     shadow=_shadow(tmp_path)) as gw:
        msgs = await live(gw)
        [row] = await _rows(gw, tmp_path)
        [outcome] = gw.front[TRAFFIC].shadow.finished  # type: ignore[attr-defined]
    assert row["pair_id"] == outcome["pair_id"] and row["outcome"] == "completed"
    assert (row["primary_target"], row["shadow_target"], row["pair_kind"]) == ("gradium", "legacy", "candidate")
    assert row["ref_words"] > 0 and row["wer"] == 0.0  # the emulator's tones read back the same on both sides
    assert row["final_text_p"] == " ".join(final_text(msgs))
    assert row["first_final_ms_p"] is not None and row["first_final_ms_s"] is not None
    # the primary session is observed frame by frame (its audio format read from the request), and the vendor
    # socket's frames are replayed with their times: emission latency and turns on both legs
    assert row["metrics"]["p"]["audio_sent_s"] > 1 and row["emission_ms_p"] is not None
    assert row["metrics"]["s"]["audio_sent_s"] == row["metrics"]["p"]["audio_sent_s"]
    assert row["emission_ms_s"] is not None and row["metrics"]["eot_matched"] == 1
    assert_no_flags(row)
    # bookkeeping columns: what decided, what it cost, how the shadow went, both legs' ids
    gw_version = gw.front[TRAFFIC].version  # type: ignore[attr-defined]
    assert row["config_version"] == gw_version and row["sticky_reason"] == "credential"
    assert abs(row["cost_stt_seconds"] - row["metrics"]["s"]["audio_sent_s"]) < 0.01 and row["cost_tts_chars"] == 0
    assert row["lag_p95_ms"] >= 0 and row["shadow_connect_ms"] > 0
    legs = row["metrics"]["legs"]  # the vendor's `dg-request-id` of the shadow socket, Gradium's of the primary
    assert row["shadow_request_id"] and legs["s"]["upstream_request_id"] == row["shadow_request_id"]
    assert legs["p"]["upstream_request_id"].startswith("req_")
    assert row["shadow_request_id"] not in (row["primary_request_id"], legs["p"]["upstream_request_id"])
    assert all(uuid.UUID(x).version == 7 for x in (row["pair_id"], legs["p"]["leg_id"], legs["s"]["leg_id"]))


async def test_tts_shadow_stores_audio_metrics(standin: StandIn, front: Front, tmp_path: Path) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow=_shadow(tmp_path)) as gw:
        await speak(gw)
        [row] = await _rows(gw, tmp_path)
    assert row["outcome"] == "completed" and row["kind"] == "tts"
    assert (row["primary_target"], row["shadow_target"]) == ("legacy", "gradium")
    assert row["ttfa_ms_p"] is not None and row["ttfa_ms_s"] is not None
    # both sessions observed (the passthrough primary and the headless Gradium shadow): audio kept and measured
    assert row["format_match"] is True and row["metrics"]["p"]["format"] == "pcm_s16le/raw/16000/1"
    assert row["duration_ratio"] is not None and 0.5 < row["duration_ratio"] < 2
    assert row["metrics"]["s"]["lufs"] is not None
    assert_no_flags(row)
    legs = row["metrics"]["legs"]  # the headless Gradium session is the shadow leg
    assert [(legs[k]["side"], legs[k]["role"]) for k in "ps"] == [("legacy", "primary"), ("gradium", "shadow")]


async def test_vendor_socket_shadow_leg_is_measured_like_a_gradium_leg(standin: StandIn, front: Front,
                                                                      tmp_path: Path) -> None:
    """A Gradium primary with a legacy (vendor socket) shadow: the vendor's frames are kept with their times,
    so its audio is decoded and measured, and its time to first audio counts from its own first text."""
    async with front(auth=auth_with_shadow_keys(), traffic={"default": {"gradium": 100}},
                     shadow=_shadow(tmp_path)) as gw:
        await speak(gw)
        [row] = await _rows(gw, tmp_path)
    assert (row["primary_target"], row["shadow_target"], row["outcome"]) == ("gradium", "legacy", "completed")
    p, s = row["metrics"]["p"], row["metrics"]["s"]
    assert s["format"] == p["format"] == "pcm_s16le/raw/16000/1" and row["format_match"] is True
    assert s["duration_s"] == pytest.approx(p["duration_s"], rel=0.05) and s["lufs"] is not None
    assert s["silence_ratio"] is not None and s["noise_floor_dbfs"] is not None
    assert row["ttfa_ms_s"] is not None and row["ttfa_ms_s"] > 0
    assert_no_flags(row)
    assert row["cost_tts_chars"] == len("Hello there. ") + 1 and row["shadow_connect_ms"] > 0
