"""The primary's own CPU per frame for an active shadow, in process (no sockets, so it holds on a loaded
machine): one ElevenLabs stream-input session's events (5 client frames, 48 audio outputs) through the
gateway's addons (metrics, request log, shadow, trace), with shadow rate 1 (a planned leg) against rate 0.
The shadow leg's own task is parked: only what the primary's path pays is counted.

    python bench/shadow_cost.py [--sessions N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from gateway.addons import AddonManager, Tap
from gateway.events import Flow
from gateway.mapping.loader import load_mappings
from gateway.observability import LogAddon, Metrics, MetricsAddon, configure_logging
from gateway.traffic import shadow as sh
from gateway.traffic import shadow_leg
from gateway.traffic.bridge import TraceAddon
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.policy import Unit
from gateway.traffic.settings import ShadowRule
from gateway.traffic.shadow_addon import ShadowAddon

ROOT = Path(__file__).resolve().parent.parent
IN_FRAME = '{"text":"The quick brown fox jumps over the lazy dog. ","try_trigger_generation":true}'
OUT_FRAME = orjson.dumps({"audio": base64.b64encode(bytes(7000)).decode(), "isFinal": None})
FRAMES_IN, FRAMES_OUT = 5, 48


class _Shadow:
    def __init__(self) -> None:
        self.legs: set[Any] = set()
        self.metrics = TrafficMetrics(CollectorRegistry(), "bench")
        self.budget = None  # the parked leg never draws on it
        self.version = None


async def _parked(self: Any) -> None:
    await asyncio.sleep(3600)


async def measure(sessions: int) -> dict[int, float]:
    configure_logging("warning")
    shadow_leg.ShadowLeg._run = _parked  # type: ignore[method-assign]
    addons = AddonManager([MetricsAddon(Metrics()), LogAddon(), ShadowAddon(_Shadow()), TraceAddon()])  # type: ignore[arg-type]
    mapping = load_mappings(ROOT / "mappings")["elevenlabs"]
    route = mapping.routes["tts_stream_input"]
    unit = Unit("elevenlabs", route.name, "tts", "ws", "bench", keys={})
    best: dict[int, float] = {}
    for rate in (0, 1) * 3:
        t0 = time.process_time()
        for _ in range(sessions):
            flow = Flow("elevenlabs", route.name, "ws")
            if rate:
                sh.PLAN.set(sh.ShadowPlan(unit, mapping, route, ShadowRule(rate=1), "gradium", "legacy", "bench",
                                          "key", {"voice_id": "v"}, "output_format=pcm_24000", CIMultiDict()))
            tap = Tap(addons, flow)
            tap.start()
            for _ in range(FRAMES_IN):
                tap.frame(IN_FRAME)
            for _ in range(FRAMES_OUT):
                tap.output(OUT_FRAME)
            if (leg := flow.data.pop("shadow_pair", None)) is not None:
                leg.start()  # idempotent: the call the first output scheduled finds it started
                leg.task.cancel()
            tap.end("ok")
        per_frame = (time.process_time() - t0) / sessions / (FRAMES_IN + FRAMES_OUT) * 1e6
        best[rate] = min(best.get(rate, per_frame), per_frame)
        await asyncio.sleep(0)  # the cancelled legs go
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args()
    best = asyncio.run(measure(args.sessions))
    print(f"primary CPU per frame (session start and end included), best of 3: rate 0 {best[0]:.2f} us, "
          f"rate 1 {best[1]:.2f} us (+{best[1] - best[0]:.2f} us per frame for the shadow)")


if __name__ == "__main__":
    main()
