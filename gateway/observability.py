"""Structured JSON logs with secret redaction, Prometheus metrics, and the two addons that feed them
from session events (`MetricsAddon`, `LogAddon`): the runtimes themselves neither count nor log requests."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.events import FirstOutput, SessionEnd, SessionStart

_SECRET_KEY = re.compile(
    r"(api[-_]?key|authorization|token|secret|password|sec-websocket-protocol|xi[-_]api[-_]key)", re.I
)
# Credentials that can hide inside free text (URLs, headers echoed in messages).
_SECRET_TEXT = re.compile(
    r"((?:token|bearer|api-key|basic)\s+|(?:token|api_key|access_token|single_use_token|xi_api_key)=)"
    r"([^\s&,;\"']+)",
    re.I,
)


# Header lines echoed by libraries (`Authorization: Token ...`, `b'xi-api-key: ...'`) and subprotocol
# lists (`['token', 'KEY']`, aiohttp's "Client protocols ... don't overlap" warning).
_SECRET_HEADER = re.compile(
    r"((?:authorization|proxy-authorization|x-api-key|xi-api-key|api-key|cookie|set-cookie|"
    r"sec-websocket-protocol)\s*:\s*)([^\r\n'\"\\]+)",
    re.I,
)
_PROTOCOL_LIST = re.compile(r"(Client protocols\s*)(\[[^\]]*\]|\([^)]*\))", re.I)


# Every word the three patterns above need: a text without any of them has nothing to redact, and one
# search says so (log lines are mostly ids, names and statuses) instead of three substitutions.
_MAY_HOLD_SECRET = re.compile(r"token|bearer|api[-_]key|basic|authorization|cookie|sec-websocket-protocol|"
                              r"client protocols", re.I)
_KEY_IS_SECRET: dict[str, bool] = {}  # field name -> `_SECRET_KEY` matches it (field names repeat)


def redact_text(text: str) -> str:
    if _MAY_HOLD_SECRET.search(text) is None:
        return text
    text = _SECRET_HEADER.sub(lambda m: m.group(1) + "***", text)
    text = _PROTOCOL_LIST.sub(lambda m: m.group(1) + "[***]", text)
    return _SECRET_TEXT.sub(lambda m: m.group(1) + "***", text)


def _secret_key(key: str) -> bool:
    secret = _KEY_IS_SECRET.get(key)
    if secret is None:
        secret = _SECRET_KEY.search(key) is not None
        if len(_KEY_IS_SECRET) < 4096:  # field names are few; a flood of new ones is not kept
            _KEY_IS_SECRET[key] = secret
    return secret


def _redact(value: Any, key: str = "") -> Any:
    if key and _secret_key(key):
        return "***" if value not in (None, "") else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in list(event.keys()):
        event[k] = _redact(event[k], k)
    return event


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _render_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library's record: its formatted message is the event, its logger name kept."""
    record = event.get("_record")
    if record is not None:
        event["logger"] = record.name
    return event


def log_enabled(level: int) -> bool:
    """Whether events of `level` are written (`configure_logging` gives the root logger and structlog's
    filter one level). A hot path asks first: structlog's lazy proxy builds a logger on every call, even
    for an event it then drops (loggers are not cached, so that reconfiguring takes effect)."""
    return logging.root.isEnabledFor(level)


def debug_enabled() -> bool:
    return log_enabled(logging.DEBUG)


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr, one per event, with contextvars (request id, provider, route) merged in.

    Every library logger (aiohttp's server, access, websocket and client loggers, asyncio, ...) goes
    through the same redacting JSON pipeline via the root logger, and so do Python warnings."""
    level_no = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _render_message],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_gateway_json", False):
            root.removeHandler(old)
    handler._gateway_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level_no)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


log = structlog.get_logger("gateway")
_REQUEST_KEYS = ("request_id", "provider", "route")


def bind_request(request_id: str, provider: str, route: str) -> None:
    """Every log line the current task writes until `unbind_request` names this request."""
    structlog.contextvars.bind_contextvars(request_id=request_id, provider=provider, route=route)


def unbind_request() -> None:
    structlog.contextvars.unbind_contextvars(*_REQUEST_KEYS)


class Metrics:
    """One registry per app so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("provider", "route", "status", "target")  # target: gradium | legacy (the live A/B)
        self.requests = Counter(
            "gateway_requests_total", "Requests and WebSocket sessions handled", labels, registry=self.registry
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Whole request or session duration",
            ("provider", "route", "target"),
            registry=self.registry,
        )
        self.first_output = Histogram(
            "gateway_time_to_first_output_seconds",
            "From request start to the first audio (TTS) or transcript (STT) sent to the client",
            ("provider", "route", "target"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.degraded = Counter(
            "gateway_degraded_answers_total", "Answers sent without a part Gradium could not give (voices, credits)",
            ("provider", "route", "what"), registry=self.registry,
        )
        self.active_ws = Gauge(
            "gateway_active_websockets", "Open client WebSockets", ("provider",), registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Errors reported by or talking to Gradium", ("kind",),
            registry=self.registry,
        )
        self.addon_errors = Counter(
            "gateway_addon_errors_total", "Exceptions raised by addons (caught; the session went on)", ("addon",),
            registry=self.registry,
        )


class LabelledChildren:
    """`metric.labels(*values)`, kept: `labels()` checks and locks on every call, and the callers run once
    per request or session. Children are never removed, and the label sets are bounded (providers, routes,
    statuses, targets, reasons)."""

    __slots__ = ("_children",)

    def __init__(self) -> None:
        self._children: dict[tuple[Any, ...], Any] = {}

    def __call__(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class MetricsAddon:
    """Requests, durations, time to first output and open sockets, per provider and route."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._child = LabelledChildren()  # five label lookups per session

    def session_start(self, ev: SessionStart) -> None:
        if ev.flow.transport == "ws" and not ev.flow.headless:
            self._child(self.metrics.active_ws, ev.flow.provider).inc()

    def first_output(self, ev: FirstOutput) -> None:
        if not ev.flow.data.get("shadow_leg"):
            flow = ev.flow
            self._child(self.metrics.first_output, flow.provider, flow.route, flow.target).observe(ev.t - flow.started)

    def session_end(self, ev: SessionEnd) -> None:
        flow = ev.flow
        if flow.transport == "ws" and not flow.headless:
            self._child(self.metrics.active_ws, flow.provider).dec()
        if flow.data.get("shadow_leg"):
            return  # shadow legs are not the client's traffic (their outcomes: gateway_shadow_legs_total)
        self._child(self.metrics.requests, flow.provider, flow.route, ev.status, flow.target).inc()
        for d in ev.degraded:
            self.metrics.degraded.labels(flow.provider, flow.route, d.what).inc()
        self._child(self.metrics.duration, flow.provider, flow.route, flow.target).observe(ev.t - flow.started)


class LogAddon:
    """One JSON line per request and per session, successes included: `request.done` / `request.error`
    (HTTP), `ws.done` / `ws.refused` (WebSocket), with request id, provider, route, target and timings."""

    def session_end(self, ev: SessionEnd) -> None:
        flow = ev.flow
        if not log_enabled(logging.WARNING if flow.transport == "http" and ev.degraded else logging.INFO):
            return  # the line would be dropped: not built (once per request, on a busy path)
        fields: dict[str, Any] = {
            "request_id": flow.request_id, "provider": flow.provider, "route": flow.route, "target": flow.target,
            "status": ev.status, "ms": flow.elapsed_ms(ev.t), "first_output_ms": ev.first_output_ms,
        }
        if flow.headless:
            fields["headless"] = True
        if ev.kind is not None:
            fields["kind"] = ev.kind
            fields["message"] = ev.message
        if ev.upstream_request_id is not None:
            fields["upstream_request_id"] = ev.upstream_request_id
        if ev.upstream_format is not None:
            fields["upstream_format"] = ev.upstream_format
        if ev.exc is not None:
            fields["exc_info"] = ev.exc
        if ev.degraded:  # answered without part of it (Gradium's voice list, the credits): worth a warning
            fields["degraded"] = [{"what": d.what, "kind": d.kind, "message": d.message} for d in ev.degraded]
        if flow.transport == "http":
            fields["status"] = ev.http_status
            fields["bytes"] = ev.bytes_out
            emit = log.warning if ev.degraded else log.info
            emit("request.error" if ev.kind is not None else "request.done", **fields)
            return
        if ev.http_status is not None:  # refused before the upgrade
            log.info("ws.refused", http_status=ev.http_status, **fields)
            return
        log.info("ws.done", close_code=ev.close_code, frames_in=ev.frames_in, events_out=ev.events_out, **fields)
