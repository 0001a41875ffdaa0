"""From the shadow machinery's finished legs to comparable pair traces.

`gateway.traffic.shadow` keeps, per leg, a bounded `LegStats`: its own send and first-output times,
counters, and the small text frames it produced (transcripts and events; audio-sized frames and binary
audio are counted, not kept). `pair_from_shadow_leg` turns one finished `ShadowLeg` into a `PairTrace`
by running the route's observer rules over those frames, so every shadowed unit yields a stored pair
with its outcome, WER/CER and first-output latencies.

Better than those summaries, `TraceAddon` observes the sessions themselves through the session events
(client frames and outputs with their times): the primary session of every shadowed unit and a Gradium
shadow leg's headless session. Those legs get full traces (per-frame times, kept audio). A legacy shadow
leg (a vendor socket) emits no events, so it falls back to its `LegStats`; a pair with such a leg is
flagged `frame_times_unknown` (no emission/finalize latency, end-of-turn deltas or TTS audio metrics).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiDict

from gateway.audio.formats import AudioFormat
from gateway.mapping.compiler import audio_format
from gateway.mapping.params import RequestData
from gateway.traffic.observe import Observer
from gateway.traffic.trace import LegTrace, Output, PairTrace


def _fill(trace: LegTrace, stats: Any, kind: str) -> None:
    start_ms = (stats.sent_first or stats.started) * 1000.0
    first_ms = stats.first_output * 1000.0 if stats.first_output is not None else None
    trace.start_ms = start_ms
    trace.request_sent_ms = start_ms  # latencies count from the leg's own first send
    trace.upstream_request_id = stats.upstream_request_id
    observer = Observer(trace, trace.provider, trace.route)
    at = first_ms if first_ms is not None else start_ms
    for text in stats.texts:
        observer.upstream(text, t=at)
    if kind == "tts" and first_ms is not None:
        # the audio itself was not kept: one marker event keeps the time to first audio
        trace.outputs.insert(0, Output(first_ms, "audio", 0, audio_bytes=max(stats.audio_bytes, 1)))
    trace.first_output_ms = first_ms
    trace.output_count = stats.frames_out
    trace.output_bytes = stats.bytes_out
    trace.audio_bytes_total = stats.audio_bytes
    trace.close(code=stats.close_code, t=at)


def client_audio_format(plan: Any) -> AudioFormat | None:
    """The audio format the client asked for (TTS) or sends (STT), read from the unit's request through the
    route's own params and `audio_out`/`audio_in` templates; None when the request does not name one."""
    route = plan.route
    template = route.audio_out if plan.unit.kind == "tts" else route.audio_in
    if template is None:
        return None
    try:
        params = route.read_params(RequestData(path=plan.path, query=MultiDict(parse_qsl(plan.raw_query)),
                                               header=plan.headers))
        rendered = template({"provider": plan.unit.provider, **params})
        if not isinstance(rendered, dict) or not rendered.get("encoding"):
            return None
        return audio_format(rendered, "audio")
    except Exception:  # a format named only in a later message, or one the primary refused: unknown here
        return None


class TraceAddon:
    """Session-event addon: records the primary and Gradium-shadow sessions of shadowed units into traces.

    Register it after the shadow addon (which marks the primary's flow with its leg). Open traces are
    bounded by `max_open`; past it, units fall back to the legs' summaries.
    """

    def __init__(self, max_open: int = 256) -> None:
        self.max_open = max_open
        self.traces: dict[str, LegTrace] = {}
        self.formats: dict[str, AudioFormat | None] = {}  # pair id -> client audio format, while open

    @staticmethod
    def _key(flow: Any) -> str | None:
        leg = flow.data.get("shadow_pair")
        if leg is not None:
            return f"{leg.plan.pair_id}:p"
        pair_id = flow.data.get("shadow_leg")
        return f"{pair_id}:s" if pair_id else None

    def session_start(self, ev: Any) -> None:
        key = self._key(ev.flow)
        if key is None or len(self.traces) >= self.max_open:
            return
        pair_id, _, which = key.partition(":")
        if which == "p":
            self.formats[pair_id] = client_audio_format(ev.flow.data["shadow_pair"].plan)
        fmt = self.formats.get(pair_id)
        trace = LegTrace("gradium", "primary", ev.flow.provider, ev.flow.route, "stt", "ws", audio_format=fmt)
        self.traces[key] = trace
        ev.flow.data["pair_trace"] = (trace, Observer(trace, ev.flow.provider, ev.flow.route, fmt))

    def client_frame(self, ev: Any) -> None:
        # sockets only: an HTTP primary's request is in its shadow plan already
        if ev.flow.transport == "ws" and (got := ev.flow.data.get("pair_trace")) is not None:
            got[1].client(ev.data, t=ev.t * 1000.0)

    def client_output(self, ev: Any) -> None:
        if (got := ev.flow.data.get("pair_trace")) is not None:
            data = ev.data
            if isinstance(data, bytes) and data[:1] == b"{":
                with contextlib.suppress(UnicodeDecodeError):
                    data = data.decode()  # rendered text frames arrive as JSON bytes
            got[1].upstream(data, t=ev.t * 1000.0)

    def session_end(self, ev: Any) -> None:
        if (got := ev.flow.data.pop("pair_trace", None)) is not None:
            trace = got[0]
            trace.upstream_request_id = ev.upstream_request_id
            trace.close(code=ev.close_code, status=ev.http_status, t=ev.t * 1000.0)

    def take(self, pair_id: str, which: str) -> LegTrace | None:
        if which == "s":
            self.formats.pop(pair_id, None)
        trace = self.traces.pop(f"{pair_id}:{which}", None)
        return trace if trace is not None and trace.end_ms is not None else None


def pair_from_shadow_leg(row: dict[str, Any], leg: Any, traces: TraceAddon | None = None) -> PairTrace:
    """`row` and `leg` as `Shadow.on_pair` callbacks receive them; `traces` the addon, when registered."""
    plan = leg.plan
    unit = plan.unit
    pair = PairTrace.open(tenant=plan.tenant, provider=unit.provider, route=unit.route, kind=unit.kind,
                          transport=unit.transport, primary_side=plan.primary, shadow_side=plan.side)
    pair.pair_id = plan.pair_id
    pair.outcome = row.get("outcome") or "shadow_error"
    pair.primary_request_id = plan.primary_request_id or None
    pair.lag_p95_ms = row.get("lag_p95_ms")
    pair.started_at = time.time() - (time.monotonic() - leg.started)
    pair.ended_at = time.time()
    observed = {k: traces.take(plan.pair_id, k) if traces is not None else None for k in ("p", "s")}
    for key, side, role, stats in (("p", plan.primary, "primary", leg.primary), ("s", plan.side, "shadow", leg.stats)):
        trace = observed[key]
        if trace is None:
            target = pair.primary if key == "p" else pair.shadow
            target.audio_format = client_audio_format(plan)
            _fill(target, stats, unit.kind)
            pair.flags.add("frame_times_unknown")
            continue
        trace.side, trace.role, trace.kind, trace.transport = side, role, unit.kind, unit.transport
        if key == "p":
            pair.primary = trace
        else:
            pair.shadow = trace
    return pair
