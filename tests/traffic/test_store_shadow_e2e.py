"""Shadowed sockets end up as compared rows in the store: the recorder hooked to the shadow machinery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.traffic.admin import SHADOW_RECORDER
from gateway.traffic.router import TRAFFIC
from gateway.traffic.store import load_rows
from tests.conftest import Gateway
from tests.standin import StandIn
from tests.traffic.conftest import Front
from tests.traffic.test_shadow import RACHEL, auth_with_shadow_keys, final_text, finished, live


def _shadow(tmp_path: Path) -> dict[str, Any]:
    return {"enabled": True, "rules": [{"match": {"tenant": "acme"}, "rate": 1}],
            "store": {"path": str(tmp_path / "shadow.db"), "store_text": True}}


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
    # the primary session is observed frame by frame (its audio format read from the request): emission latency;
    # a vendor-socket shadow leg only has its summary
    assert row["metrics"]["p"]["audio_sent_s"] > 1 and row["emission_ms_p"] is not None
    assert "frame_times_unknown" in row["flags"] and row["emission_ms_s"] is None


async def test_tts_shadow_stores_audio_metrics(standin: StandIn, front: Front, tmp_path: Path) -> None:
    async with front(auth=auth_with_shadow_keys(), shadow=_shadow(tmp_path)) as gw:
        async with aiohttp.ClientSession() as s, s.ws_connect(
                f"{gw.ws}/v1/text-to-speech/{RACHEL}/stream-input?output_format=pcm_16000",
                headers={"xi-api-key": "gw_acme_live_key"}) as ws:
            for m in ({"text": " "}, {"text": "Hello there. "}, {"text": ""}):
                await ws.send_str(orjson.dumps(m).decode())
            _ = [m async for m in ws]
        [row] = await _rows(gw, tmp_path)
    assert row["outcome"] == "completed" and row["kind"] == "tts"
    assert (row["primary_target"], row["shadow_target"]) == ("legacy", "gradium")
    assert row["ttfa_ms_p"] is not None and row["ttfa_ms_s"] is not None
    # both sessions observed (the passthrough primary and the headless Gradium shadow): audio kept and measured
    assert row["format_match"] is True and row["metrics"]["p"]["format"] == "pcm_s16le/raw/16000/1"
    assert row["duration_ratio"] is not None and 0.5 < row["duration_ratio"] < 2
    assert row["metrics"]["s"]["lufs"] is not None and "frame_times_unknown" not in row["flags"]
