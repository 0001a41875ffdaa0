"""A finished shadow unit as a `PairTrace` for the comparison store, built in the shadow's own task.

During the unit the primary only appended `(time, frame)` to bounded lists (no parsing on its path);
here both legs' frames go through the same dialect observer (`gateway.traffic.observe`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from gateway.traffic.observe import Observer, observe_rest_body
from gateway.traffic.trace import PairTrace

MS = 1000.0


def _text(data: str | bytes) -> str | bytes:
    # the translated runtime reports text frames as bytes too: a JSON object is a text frame
    return data.decode("utf-8", "replace") if isinstance(data, bytes) and data[:1] == b"{" else data


def _bytes_per_s(raw_query: str) -> float:
    q = parse_qs(raw_query)
    enc = q.get("encoding", ["linear16"])[0]
    try:
        hz = float(q.get("sample_rate", ["16000"])[0])
    except ValueError:
        hz = 16000.0
    return hz * (1 if enc in ("mulaw", "alaw", "pcm_mulaw", "pcm_alaw") else 4 if enc.endswith("32") else 2)


def pair_trace(plan: Any, outcome: str, legs: list[Any]) -> PairTrace:
    """`legs`: the primary's then the shadow's `LegStats` (frames sent and received, with their times)."""
    unit = plan.unit
    pair = PairTrace.open(tenant=plan.tenant, provider=unit.provider, route=unit.route, kind=unit.kind,
                          transport=unit.transport, primary_side=plan.primary, shadow_side=plan.side)
    pair.pair_id = plan.pair_id
    pair.outcome = outcome
    pair.primary_request_id = plan.primary_request_id
    bps = _bytes_per_s(plan.raw_query)
    for trace, stats in zip((pair.primary, pair.shadow), legs, strict=True):
        obs = Observer(trace, unit.provider, unit.route)
        trace.start_ms = stats.started * MS
        if plan.body is not None:
            trace.sent_request(len(plan.body), t=(stats.sent_first or stats.started) * MS)
        for t, data in stats.ins:
            if isinstance(data, int):  # binary audio, kept as its size
                trace.sent_audio(data, data / bps, t=t * MS)
            else:
                obs.client(data, t=t * MS)
        for t, data in stats.outs:
            if plan.body is not None and isinstance(data, bytes):
                observe_rest_body(trace, data, "application/json" if data[:1] == b"{" else "audio/*", t=t * MS)
            else:
                obs.upstream(_text(data), t=t * MS)
        trace.upstream_request_id = stats.upstream_request_id
        trace.close(code=stats.close_code if unit.transport == "ws" else None,
                    status=stats.close_code if unit.transport == "rest" else None)
    return pair
