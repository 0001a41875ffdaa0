"""Prometheus metrics of compared pairs and of the comparison store (traffic.md §8), on the app's registry.

The traffic layer's own metrics (assignments, passthrough, shadow legs, queue lag, budgets, per-leg first
output) live in `gateway.traffic.metrics`; these are the ones the recorder and the store observe once a
pair has been compared. No pair or request ids in labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WER_BUCKETS = (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
DELTA_BUCKETS = (-1, -0.5, -0.2, -0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
RATIO_BUCKETS = (0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2)


class PairMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pairs = Counter(
            "gateway_shadow_pairs_total", "Compared units recorded, by outcome",
            ("provider", "route", "pair_kind", "outcome"), registry=registry,
        )
        self.wer = Histogram(
            "gateway_shadow_wer", "Word error rate of the candidate leg against the reference leg",
            ("provider", "route", "pair_kind"), buckets=WER_BUCKETS, registry=registry,
        )
        self.first_output_delta = Histogram(
            "gateway_shadow_first_output_delta_seconds",
            "Candidate minus reference time to first output (TTFA for TTS, first final for STT)",
            ("provider", "route", "pair_kind"), buckets=DELTA_BUCKETS, registry=registry,
        )
        self.duration_ratio = Histogram(
            "gateway_shadow_duration_ratio", "Candidate audio duration divided by the reference's",
            ("provider", "route"), buckets=RATIO_BUCKETS, registry=registry,
        )
        self.store_rows = Counter(
            "gateway_shadow_store_rows_total", "Comparison rows by sink and fate",
            ("sink", "status"), registry=registry,
        )
        self.store_queue = Gauge(
            "gateway_shadow_store_queue_rows", "Rows waiting for the store writer", ("sink",), registry=registry
        )
        self.store_lag = Histogram(
            "gateway_shadow_store_lag_seconds", "Row handed to the store -> committed", ("sink",),
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10), registry=registry,
        )
        self.compare_skipped = Counter(
            "gateway_shadow_metrics_skipped_total", "Pairs stored without metrics because the comparator was busy",
            registry=registry,
        )
