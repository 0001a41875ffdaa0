"""Addons: plain objects with methods named after the session events they want (`gateway/events.py`).

    class CountClears:
        def __init__(self) -> None:
            self.n = 0

        def action_taken(self, ev: ActionTaken) -> None:
            if ev.action == "clear":
                self.n += 1

    app = create_app(settings, addons=[CountClears()])      # or: app[ADDONS].register(CountClears())

The built-in list is explicit (`default_addons`: metrics and the request log). `AddonManager` computes,
per hook, the tuple of bound methods once, when an addon is registered, so the hot path does no
`getattr`; a runtime tests the tuple before building an event, so a hook nobody wants costs one
truth test. An addon that follows only some sessions (the shadow's: the sampled ones) says which with
`watches(flow)`, asked once after `session_start`: a session nobody watches then costs one truth test
per frame or output, not an event per frame. Every call is guarded (mitmproxy's `safecall`): an
addon's exception is logged with its traceback and counted (`errors`, and `gateway_addon_errors_total`),
and never reaches the client or stops the session.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiohttp import web

from gateway.events import (
    HOOKS,
    ActionTaken,
    ClientFrame,
    ClientOutput,
    Event,
    FirstOutput,
    Flow,
    SessionEnd,
    SessionStart,
)
from gateway.observability import LogAddon, Metrics, MetricsAddon

log = structlog.get_logger("gateway")
Hook = tuple[Callable[[Any], Any], ...]


class AddonManager:
    """The registered addons and, per hook, the methods to call."""

    def __init__(self, addons: Iterable[object] = (), metrics: Metrics | None = None) -> None:
        self.addons: list[object] = []
        self.metrics = metrics
        self.errors: Counter[str] = Counter()  # "<addon>.<hook>" -> exceptions caught
        self._by_hook: dict[str, Hook] = {}
        self._owner: dict[int, object] = {}  # id(bound method) -> its addon, for `watches`
        self.session_start: Hook = ()
        self.client_frame: Hook = ()
        self.action_taken: Hook = ()
        self.client_output: Hook = ()
        self.first_output: Hook = ()
        self.context_end: Hook = ()
        self.session_end: Hook = ()
        for addon in addons:
            self.register(addon)
        self._rebuild()

    def register(self, addon: object) -> None:
        self.addons.append(addon)
        self._rebuild()

    def remove(self, addon: object) -> None:
        self.addons.remove(addon)
        self._rebuild()

    def _rebuild(self) -> None:
        self._names: dict[int, str] = {}
        self._owner = {}
        for hook in HOOKS:
            fns = []
            for a in self.addons:
                fn = getattr(a, hook, None)
                if callable(fn):
                    fns.append(fn)
                    self._names[id(fn)] = f"{type(a).__name__}.{hook}"
                    self._owner[id(fn)] = a
            self._by_hook[hook] = tuple(fns)
            setattr(self, hook, self._by_hook[hook])
        self._selective = any(callable(getattr(a, "watches", None)) for a in self.addons)

    def per_flow(self, flow: Flow) -> tuple[Hook, Hook]:
        """The `client_frame` and `client_output` methods to call for `flow`: those of addons without
        `watches`, and of those whose `watches(flow)` is true (a failing `watches` counts as true)."""
        if not self._selective:
            return self.client_frame, self.client_output
        verdicts: dict[int, bool] = {}

        def wanted(fn: Callable[[Any], Any]) -> bool:
            addon = self._owner[id(fn)]
            if id(addon) not in verdicts:
                watches = getattr(addon, "watches", None)
                try:
                    verdicts[id(addon)] = not callable(watches) or bool(watches(flow))
                except Exception:
                    log.exception("addon.error", addon=f"{type(addon).__name__}.watches")
                    verdicts[id(addon)] = True
            return verdicts[id(addon)]

        return tuple(f for f in self.client_frame if wanted(f)), tuple(f for f in self.client_output if wanted(f))

    def emit(self, event: Event, fns: Hook | None = None) -> None:
        """Call every addon that wants this event (`fns`: those chosen for its flow); an addon's failure is
        logged and counted, never raised."""
        for fn in self._by_hook[event.hook] if fns is None else fns:
            try:
                fn(event)
            except Exception:
                name = self._names.get(id(fn), event.hook)
                self.errors[name] += 1
                if self.metrics is not None:
                    self.metrics.addon_errors.labels(name).inc()
                log.exception("addon.error", addon=name)


def default_addons(metrics: Metrics) -> list[object]:
    """The built-in addons, in call order: Prometheus metrics, then the one-line-per-request log."""
    return [MetricsAddon(metrics), LogAddon()]


class Tap:
    """A runtime's handle on one session's events: counts what the session end reports (frames in,
    outputs, bytes, the first output's time) and emits each event only when some addon wants it."""

    __slots__ = (
        "addons",
        "bytes_out",
        "ended",
        "events_out",
        "first_output",
        "flow",
        "frame_hooks",
        "frames_in",
        "output_hooks",
        "upstream_format",
        "upstream_request_id",
    )

    def __init__(self, addons: AddonManager, flow: Flow) -> None:
        self.addons = addons
        self.flow = flow
        self.frame_hooks = addons.client_frame  # narrowed to the addons watching this flow by `start`
        self.output_hooks = addons.client_output
        self.frames_in = 0
        self.events_out = 0
        self.bytes_out = 0
        self.first_output: float | None = None
        self.upstream_request_id: str | None = None
        self.upstream_format: str | None = None
        self.ended = False

    def start(self) -> None:
        if self.addons.session_start:
            self.addons.emit(SessionStart(self.flow))
        self.frame_hooks, self.output_hooks = self.addons.per_flow(self.flow)

    def frame(self, data: str | bytes, t: float | None = None) -> None:
        """`t`: when the frame arrived (default: now), for a caller that tells observers after forwarding it."""
        self.frames_in += 1
        if self.frame_hooks:
            self.addons.emit(ClientFrame(self.flow, data, time.monotonic() if t is None else t), self.frame_hooks)

    def action(self, action: str, context: str | None) -> None:
        if self.addons.action_taken:
            self.addons.emit(ActionTaken(self.flow, action, context))

    def output(self, data: str | bytes) -> None:
        """Called for every frame or body chunk sent: with no `client_output` subscriber it only counts."""
        self.events_out += 1
        self.bytes_out += len(data)
        first = self.first_output is None
        if first:
            self.first_output = time.monotonic()
            if self.addons.first_output:
                self.addons.emit(FirstOutput(self.flow, self.first_output))
        if self.output_hooks:
            self.addons.emit(ClientOutput(self.flow, data, len(data), time.monotonic(), first), self.output_hooks)

    def end(self, status: str, **fields: Any) -> SessionEnd:
        self.ended = True
        ev = SessionEnd(self.flow, status, frames_in=self.frames_in, events_out=self.events_out,
                        bytes_out=self.bytes_out, first_output=self.first_output,
                        upstream_request_id=self.upstream_request_id, upstream_format=self.upstream_format, **fields)
        if self.addons.session_end:
            self.addons.emit(ev)
        return ev


ADDONS = web.AppKey("addons", AddonManager)
