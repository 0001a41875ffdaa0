"""Structured JSON logs with secret redaction, and Prometheus metrics."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECRET_KEY = re.compile(
    r"(api[-_]?key|authorization|token|secret|password|sec-websocket-protocol|xi[-_]api[-_]key)", re.I
)
# Credentials that can hide inside free text (URLs, headers echoed in messages).
_SECRET_TEXT = re.compile(
    r"((?:token|bearer|api-key|basic)\s+|(?:token|api_key|access_token|single_use_token|xi_api_key)=)"
    r"([^\s&,;\"']+)",
    re.I,
)


def redact_text(text: str) -> str:
    return _SECRET_TEXT.sub(lambda m: m.group(1) + "***", text)


def _redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key):
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


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr, one per event, with contextvars (request id, provider, route) merged in."""
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


class Metrics:
    """One registry per app so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("provider", "route", "status")
        self.requests = Counter(
            "gateway_requests_total", "Requests and WebSocket sessions handled", labels, registry=self.registry
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Whole request or session duration",
            ("provider", "route"),
            registry=self.registry,
        )
        self.first_output = Histogram(
            "gateway_time_to_first_output_seconds",
            "From request start to the first audio (TTS) or transcript (STT) sent to the client",
            ("provider", "route"),
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.active_ws = Gauge(
            "gateway_active_websockets", "Open client WebSockets", ("provider",), registry=self.registry
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Errors reported by or talking to Gradium", ("kind",),
            registry=self.registry,
        )
