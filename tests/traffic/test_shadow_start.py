"""When a shadow leg's task starts: an STT leg with its unit, a TTS leg only once its primary's first output is
out, so nothing of the leg (task, admission, log line, dial) runs inside the primary's time to first audio."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from gateway.addons import AddonManager, Tap
from gateway.events import Flow
from gateway.mapping.loader import load_mappings
from gateway.traffic import shadow as sh
from gateway.traffic import shadow_leg
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.policy import Unit
from gateway.traffic.settings import ShadowRule
from gateway.traffic.shadow_addon import ShadowAddon

MAPPINGS = load_mappings(Path(__file__).resolve().parents[2] / "mappings")


class _Shadow:
    """What a leg reads of its `Shadow` before its task runs."""

    def __init__(self) -> None:
        self.legs: set[Any] = set()
        self.metrics = TrafficMetrics(CollectorRegistry(), "test")
        self.budget = None


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The legs whose task ran, in order (the task itself does nothing else)."""
    ran: list[Any] = []

    async def _run(self: Any) -> None:
        ran.append(self)

    monkeypatch.setattr(shadow_leg.ShadowLeg, "_run", _run)
    return ran


def _session(provider: str, route_name: str, kind: str) -> tuple[Tap, Flow]:
    mapping = MAPPINGS[provider]
    route = mapping.routes[route_name]
    unit = Unit(provider, route.name, kind, "ws", "acme", keys={})
    sh.PLAN.set(sh.ShadowPlan(unit, mapping, route, ShadowRule(rate=1), "gradium", "legacy", "acme", "key", {},
                              "", CIMultiDict()))
    flow = Flow(provider, route.name, "ws")
    tap = Tap(AddonManager([ShadowAddon(_Shadow())]), flow)  # type: ignore[arg-type]
    tap.start()
    return tap, flow


async def test_a_tts_leg_starts_after_its_primarys_first_output(runs: list[Any]) -> None:
    tap, flow = _session("elevenlabs", "tts_stream_input", "tts")
    leg = flow.data["shadow_pair"]
    tap.frame('{"text":" "}')
    tap.frame('{"text":"Hello there. "}')
    await asyncio.sleep(0.01)
    assert leg.task is None and runs == []  # the primary is still waiting for its first audio
    tap.output(b"\x00" * 640)
    assert leg.task is None  # not even inside the call that wrote it out
    await asyncio.sleep(0)
    assert leg.task is not None
    await leg.task
    assert runs == [leg] and list(leg.queue._items)[1][1] == '{"text":"Hello there. "}'
    assert leg.deferred_until > leg.started  # the wait is left out of the queue lag


async def test_an_stt_leg_starts_with_its_unit(runs: list[Any]) -> None:
    _, flow = _session("deepgram", "listen_live", "stt")
    leg = flow.data["shadow_pair"]
    assert leg.task is not None
    await leg.task
    assert runs == [leg]


async def test_a_tts_leg_whose_primary_never_answers_starts_at_the_cap(runs: list[Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_leg, "DEFER_CAP_S", 0.05)
    _, flow = _session("elevenlabs", "tts_stream_input", "tts")
    leg = flow.data["shadow_pair"]
    await asyncio.sleep(0.2)
    assert leg.task is not None and runs == [leg]


async def test_a_tts_leg_starts_when_its_primary_ends_or_it_is_dropped(runs: list[Any]) -> None:
    tap, flow = _session("elevenlabs", "tts_stream_input", "tts")
    ended = flow.data["shadow_pair"]
    tap.end("ok")
    await asyncio.sleep(0)
    assert ended.task is not None and ended.task.done() and runs == [ended]
    _, flow = _session("elevenlabs", "tts_stream_input", "tts")
    dropped = flow.data["shadow_pair"]
    dropped.drop("dropped_overflow")  # its task runs, sees the outcome and finishes (budget, count, no pair)
    await dropped.task
    assert runs == [ended, dropped] and dropped.outcome == "dropped_overflow"
