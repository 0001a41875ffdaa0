"""Prometheus metrics of the traffic layer (specs/traffic.md §8), on the app's registry.

No session, pair or request ids in labels; tenants are bounded by the configuration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.observability import LabelledChildren


class TrafficMetrics:
    def __init__(self, registry: CollectorRegistry, config_version: str) -> None:
        self.assignments = Counter(
            "gateway_traffic_assignments_total", "Units assigned to a side, by the reason that decided",
            ("provider", "route", "target", "reason"), registry=registry,
        )
        self.passthrough_errors = Counter(
            "gateway_passthrough_upstream_errors_total", "Failures reaching the legacy vendor",
            ("provider", "kind"), registry=registry,
        )
        self.passthrough = Counter(
            "gateway_passthrough_requests_total", "Requests and sockets relayed to the legacy vendor",
            ("provider", "route", "status"), registry=registry,
        )
        self.passthrough_first_output = Histogram(
            "gateway_passthrough_first_output_seconds", "Unit start to the vendor's first answer byte or frame",
            ("provider", "route"), buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5),
            registry=registry,
        )
        self.shadow_legs = Counter(
            "gateway_shadow_legs_total", "Shadow legs by outcome",
            ("provider", "route", "shadow_target", "pair_kind", "outcome"), registry=registry,
        )
        self.shadow_inflight = Gauge(
            "gateway_shadow_inflight", "Shadow legs running", ("shadow_target",), registry=registry
        )
        self.shadow_queue_lag = Histogram(
            "gateway_shadow_queue_lag_seconds", "Client frame received -> sent on the shadow leg", ("provider",),
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
        )
        self.shadow_budget = Counter(
            "gateway_shadow_budget_used_total", "Shadow spend", ("tenant", "target", "unit"), registry=registry
        )
        self.shadow_first_output = Histogram(
            "gateway_shadow_first_output_seconds", "First output of each leg of a shadowed unit",
            ("provider", "route", "leg", "target"), buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5),
            registry=registry,
        )
        self.config_info = Gauge(
            "gateway_config_info", "Version (hash) of the traffic and shadow configuration", ("version",),
            registry=registry,
        )
        self.config_info.labels(config_version).set(1)
        self._child = LabelledChildren()

    def assigned(self, provider: str, route: str, target: str, reason: str) -> None:
        """`assignments` + 1, once per unit, on the path before the unit's first upstream byte."""
        self._child(self.assignments, provider, route, target, reason).inc()
