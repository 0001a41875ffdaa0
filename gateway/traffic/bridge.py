"""From the shadow machinery's finished legs to comparable pair traces.

`TraceAddon` observes the sessions themselves through the session events (client frames and outputs
with their times): the primary session of every shadowed unit and a Gradium shadow leg's headless
session, and hangs each trace on the legs it belongs to (`ShadowLeg.traces`, "p" and "s"). A vendor-socket
shadow leg emits no session events; its `LegStats` keeps every frame it sent and received with its time,
and they are replayed through the same route observer, so a legacy leg yields the same full trace (emission
and finalize latency, turns, TTS audio) as a Gradium one. A pair whose leg lost frames to the stats' bounds
is flagged `events_truncated`.

The serving process does not read frames into traces: `pair_source` takes each leg's frames as they came
(references, no parsing) into a picklable `PairSource`, and the comparator's process builds it (JSON parsing
and base64 decoding were most of a shadowed session's cost to the serving process: bench/shadow_session_cost.py).

Noise copies (traffic.md §5.4) are legs too: a copy of the primary's side is compared with the primary's
trace, a copy of the candidate's side with the candidate leg's trace (`ShadowLeg.ref`).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson
from multidict import MultiDict

from gateway.audio.formats import AudioFormat
from gateway.mapping.compiler import audio_format
from gateway.mapping.params import RequestData
from gateway.traffic.observe import Observer, observe_rest_body
from gateway.traffic.trace import LegTrace, PairTrace


def _as_text(data: str | bytes) -> str | bytes:
    if isinstance(data, bytes) and data[:1] == b"{":
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode()  # rendered text frames arrive as JSON bytes
    return data


def replay(trace: LegTrace, stats: Any, transport: str) -> None:
    """A leg's recorded frames (`LegStats.ins`/`outs`, monotonic seconds) through the route's observer."""
    trace.start_ms = stats.started * 1000.0
    observer = Observer(trace, trace.provider, trace.route, trace.audio_format)
    if transport == "rest":
        trace.sent_request(t=(stats.sent_first or stats.started) * 1000.0)
        body = b"".join(d for _, d in stats.outs if isinstance(d, bytes))
        if body[:1] in (b"{", b"["):  # a JSON answer (transcript) is one event, when it was complete
            observe_rest_body(trace, body, "application/json", t=stats.outs[-1][0] * 1000.0)
        else:
            for t, d in stats.outs:
                observe_rest_body(trace, d if isinstance(d, bytes) else d.encode(), "audio/*", t=t * 1000.0)
    else:
        for t, d in stats.ins:
            if isinstance(d, int):  # binary frames are kept as their size
                trace.sent_audio(d, observer.seconds(d), t=t * 1000.0)
            else:
                observer.client(d, t=t * 1000.0)
        for t, d in stats.outs:
            observer.upstream(_as_text(d), t=t * 1000.0)
    if len(stats.outs) < stats.frames_out or (transport == "ws" and len(stats.ins) < stats.frames_in):
        trace.events_truncated = True  # past the stats' bounds: what is compared is a prefix
    trace.upstream_request_id = stats.upstream_request_id
    end = max((t for t, _ in (*stats.ins, *stats.outs)), default=stats.started) * 1000.0
    if transport == "rest":
        trace.close(status=stats.close_code, t=end)  # a REST leg's "close code" is its HTTP status
    else:
        trace.close(code=stats.close_code, t=end)


def client_audio_format(plan: Any) -> AudioFormat | None:
    """The audio format the client asked for (TTS) or sends (STT), read from the unit's request through the
    route's own params and `audio_out`/`audio_in` templates; None when the request does not name one."""
    route = plan.route
    template = route.audio_out if plan.unit.kind == "tts" else route.audio_in
    if template is None:
        return None
    try:
        body = orjson.loads(plan.body) if plan.body else None  # REST: the JSON body the legs were sent
        params = route.read_params(RequestData(path=plan.path, query=MultiDict(parse_qsl(plan.raw_query)),
                                               header=plan.headers, body=body))
        rendered = template({"provider": plan.unit.provider, **params})
        if not isinstance(rendered, dict) or not rendered.get("encoding"):
            return None
        return audio_format(rendered, "audio")
    except Exception:  # a format named only in a later message, or one the primary refused: unknown here
        return None


class TraceAddon:
    """Session-event addon: records the primary and Gradium-shadow sessions of shadowed units into traces.

    Register it after the shadow addon (which marks the primary's flow with its legs). Open traces are
    bounded by `max_open`; past it, legs fall back to their stats' replay.
    """

    def __init__(self, max_open: int = 256) -> None:
        self.max_open = max_open
        self.open = 0

    @staticmethod
    def _legs(flow: Any) -> tuple[str, list[Any]]:
        leg = flow.data.get("shadow_pair")
        if leg is not None:
            copy = flow.data.get("shadow_noise")
            return "p", [leg] if copy is None else [leg, copy]
        leg = flow.data.get("shadow_leg")
        return ("s", [leg]) if leg is not None else ("", [])

    def session_start(self, ev: Any) -> None:
        which, legs = self._legs(ev.flow)
        if not legs or self.open >= self.max_open:
            return
        plan = legs[0].plan
        side, role = (plan.primary, "primary") if which == "p" else (plan.side, "shadow")
        # the audio format (the route's params read from the request) is looked up once the trace is read in,
        # off the primary's path
        trace = LegTrace(side, role, ev.flow.provider, ev.flow.route, plan.unit.kind, plan.unit.transport)
        got = _Open(trace, weakref.ref(legs[0]))
        for leg in legs:
            leg.traces[which] = trace
            leg.traces[f"{which}:open"] = got  # a socket's frames, read into the trace by `_leg_source`
        self.open += 1
        ev.flow.data["pair_trace"] = got

    def watches(self, flow: Any) -> bool:
        """Only the sessions `session_start` opened a trace for."""
        return "pair_trace" in flow.data

    def client_frame(self, ev: Any) -> None:
        if (got := ev.flow.data.get("pair_trace")) is None:
            return
        if ev.flow.transport == "ws":
            got.add(True, ev.t, ev.data)
        elif got.trace.request_sent_ms is None:  # HTTP: latencies count from the request, not its body
            got.trace.sent_request(t=ev.t * 1000.0)

    def client_output(self, ev: Any) -> None:
        if (got := ev.flow.data.get("pair_trace")) is None:
            return
        if ev.flow.transport == "ws":
            got.add(False, ev.t, ev.data)
            return
        t = ev.t * 1000.0
        data = ev.data if isinstance(ev.data, bytes) else ev.data.encode()
        if got.json is None and not got.trace.output_count and data[:1] in (b"{", b"["):
            got.json = []  # a JSON answer (transcript): read once whole, as a vendor leg's body is
        if got.json is not None:
            got.json.append(data)
            got.json_t = t
        else:
            observe_rest_body(got.trace, data, "audio/*", t=t)

    def session_end(self, ev: Any) -> None:
        if (got := ev.flow.data.pop("pair_trace", None)) is not None:
            self.open -= 1
            got.end = (ev.upstream_request_id, ev.close_code, ev.http_status, ev.t * 1000.0)
            if ev.flow.transport != "ws":
                got.finish()  # HTTP: its parts were read as they came


def leg_format(leg: Any) -> AudioFormat | None:
    """The client's audio format of a leg's unit, looked up once per leg."""
    if "format" not in leg.traces:
        leg.traces["format"] = client_audio_format(leg.plan)
    return leg.traces["format"]  # type: ignore[no-any-return]


@dataclass(slots=True)
class _Open:
    """A session being traced: its trace, its leg, and an HTTP JSON answer's parts so far.

    A socket's frames are kept as they came, `(from_client, t, data)`, and read into the trace once the pair
    is built (in the comparator's process; past `MAX_PENDING` frames or bytes, here): on the primary's path a
    frame costs one append, not a JSON parse and a base64 decode."""

    trace: LegTrace
    # the shadow leg whose plan the session belongs to (its audio format), weakly: the leg holds this in its
    # `traces`, and a reference back would be a cycle, so every unit's leg and the frames it kept would wait
    # for the garbage collector, whose young collections then walked them all (4 ms pauses on the primaries)
    leg: weakref.ref[Any]
    json: list[bytes] | None = None
    json_t: float = 0.0
    frames: list[tuple[bool, float, str | bytes]] = field(default_factory=list)
    pending_bytes: int = 0
    observer: Observer | None = None

    end: tuple[str | None, int | None, int | None, float] | None = None  # request id, code, status, t

    MAX_PENDING: ClassVar[int] = 2048
    MAX_PENDING_BYTES: ClassVar[int] = 4 * 1024 * 1024

    def _observer(self) -> Observer:
        if self.observer is None:
            leg = self.leg()  # alive while its session runs: `Shadow.legs` holds it until it ends
            self.trace.audio_format = leg_format(leg) if leg is not None else None
            self.observer = Observer(self.trace, self.trace.provider, self.trace.route, self.trace.audio_format)
        return self.observer

    def finish(self) -> None:
        """An HTTP session ended: its JSON answer read and the trace closed."""
        if self.end is None or self.trace.end_ms is not None:
            return
        self._observer()
        _close(self.trace, self.json, self.json_t, self.end)

    def add(self, from_client: bool, t: float, data: str | bytes) -> None:
        frames = self.frames
        frames.append((from_client, t, data))
        self.pending_bytes += len(data)
        if len(frames) >= self.MAX_PENDING or self.pending_bytes >= self.MAX_PENDING_BYTES:
            frames, self.frames, self.pending_bytes = self.frames, [], 0
            read_in(self._observer(), frames)


def read_in(observer: Observer, frames: list[tuple[bool, float, str | bytes]]) -> None:
    for from_client, t, data in frames:
        if from_client:
            observer.client(data, t=t * 1000.0)
        else:
            observer.upstream(_as_text(data), t=t * 1000.0)


def _close(trace: LegTrace, json: list[bytes] | None, json_t: float,
           end: tuple[str | None, int | None, int | None, float]) -> None:
    if json:
        observe_rest_body(trace, b"".join(json), "application/json", t=json_t)
    request_id, code, status, t = end
    trace.upstream_request_id = request_id
    trace.close(code=code, status=status, t=t)


@dataclass(slots=True)
class LegSource:
    """A leg's trace as the serving process hands it to the comparator: the observed session's frames as they
    came (or a vendor socket's stats), read into the trace by `build` (JSON parsing and base64 decoding, in
    the comparator's process). Picklable; built once (a leg compared in two pairs keeps one leg id)."""

    trace: LegTrace
    frames: list[tuple[bool, float, str | bytes]] = field(default_factory=list)
    json: list[bytes] | None = None
    json_t: float = 0.0
    end: tuple[str | None, int | None, int | None, float] | None = None
    stats: Any = None  # LegStats to replay, when no session was observed
    built: bool = False

    def build(self) -> LegTrace:
        trace = self.trace
        if self.built:
            return trace
        self.built = True
        if self.stats is not None:
            replay(trace, self.stats, trace.transport)
        elif self.end is not None and trace.end_ms is None:
            read_in(Observer(trace, trace.provider, trace.route, trace.audio_format), self.frames)
            _close(trace, self.json, self.json_t, self.end)
        return trace


@dataclass(slots=True)
class PairSource:
    """A pair to build and compare (`build()`: its `PairTrace`, legs read in)."""

    pair: PairTrace
    primary: LegSource
    shadow: LegSource

    @property
    def pair_id(self) -> str:
        return self.pair.pair_id

    def build(self) -> PairTrace:
        self.primary.build()
        self.shadow.build()
        return self.pair


def _snapshot_stats(stats: Any) -> Any:
    """The stats with their frame lists copied: the primary may still append to its own."""
    return replace(stats, ins=list(stats.ins), outs=list(stats.outs), texts=[])


def _leg_source(leg: Any, which: str, side: str, role: str) -> LegSource:
    """The observed session's frames of a leg, else its stats (vendor sockets, past `max_open`)."""
    if (src := leg.traces.get(f"{which}:src")) is not None:
        return src  # type: ignore[no-any-return]
    plan = leg.plan
    unit = plan.unit
    got = leg.traces.get(f"{which}:open")
    if got is not None and got.end is not None:
        trace = got.trace
        if trace.audio_format is None:
            trace.audio_format = leg_format(leg)
        src = LegSource(trace, list(got.frames), got.json, got.json_t, got.end)
    else:
        trace = LegTrace(side, role, unit.provider, unit.route, unit.kind, unit.transport,  # type: ignore[arg-type]
                         audio_format=leg_format(leg))
        src = LegSource(trace, stats=_snapshot_stats(leg.primary if which == "p" else leg.stats))
    leg.traces[f"{which}:src"] = src  # one trace (one leg id) however many pairs compare with this leg
    return src


def pair_source(row: dict[str, Any], leg: Any, ended: float | None = None) -> PairSource:
    """`row` and `leg` as `Shadow.on_pair` callbacks receive them; `ended`: when the leg ended (epoch s)."""
    plan = leg.plan
    unit = plan.unit
    ref = leg.ref  # a noise copy of the candidate's side is compared with the candidate leg
    primary = _leg_source(leg, "p", plan.primary, "primary") if ref is None else \
        _leg_source(ref, "s", ref.plan.side, "shadow")
    shadow = _leg_source(leg, "s", plan.side, "shadow")
    outcome = row.get("outcome") or "shadow_error"
    if ref is not None and outcome == "completed" and ref.outcome != "completed":
        outcome = ref.outcome or "shadow_error"  # half a reference compares to nothing
    now = time.time()
    pair = PairTrace(plan.tenant, unit.provider, unit.route, unit.kind, unit.transport, primary.trace, shadow.trace,
                     pair_id=plan.pair_id, primary_target=plan.primary, outcome=outcome,
                     primary_request_id=plan.primary_request_id or None, config_version=leg.shadow.version,
                     sticky_reason=plan.sticky_reason, lag_p95_ms=row.get("lag_p95_ms"),
                     shadow_connect_ms=leg.connect_ms, cost_tts_chars=int(leg.cost["tts_chars"]),
                     cost_stt_seconds=round(leg.cost["stt_seconds"], 3),
                     started_at=now - (time.monotonic() - leg.started), ended_at=now if ended is None else ended)
    return PairSource(pair, primary, shadow)


def pair_from_shadow_leg(row: dict[str, Any], leg: Any) -> PairTrace:
    """`row` and `leg` as `Shadow.on_pair` callbacks receive them, built here."""
    return pair_source(row, leg).build()
