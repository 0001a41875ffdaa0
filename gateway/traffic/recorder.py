"""Turns finished `PairTrace`s into stored rows, off the event loop.

The shadow machinery calls `recorder.record(pair)` once both legs ended (or the shadow was dropped:
set `pair.outcome` first). `record` never blocks and never raises: the pair goes into a bounded job
queue served by one worker thread, which runs `compare_pair`, observes the pair metrics and hands the
row to every sink (SQLite store, `shadow.comparison` log line). When the comparator is behind and the
job queue is full, the pair is written at once without metrics (flag `metrics_skipped`), so outcomes
are never lost to a busy comparator (traffic.md §4.3).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from gateway.traffic import text_metrics
from gateway.traffic.compare import Comparison, RoundTripAsr, base_row, compare_pair
from gateway.traffic.pair_metrics import PairMetrics
from gateway.traffic.trace import PairTrace
from gateway.traffic.verdicts import candidate_delta_ms

log = structlog.get_logger("gateway.shadow")


def warm_up() -> None:
    """Import what the comparator imports lazily (scipy through pyloudnorm, jiwer, the Whisper normalizers)
    before the first pair: done in the worker at the first pair, that second of imports holds the GIL and
    stalls the event loop, primaries included. Call it off the loop, before serving."""
    import jiwer  # noqa: F401
    import pyloudnorm  # noqa: F401
    import scipy.signal  # noqa: F401

    text_metrics.normalize("warm up", "en")
    text_metrics.normalize("warm up", "fr")


class Buildable(Protocol):
    """A pair not read in yet (`gateway.traffic.bridge.PairSource`): built where it is compared."""

    @property
    def pair_id(self) -> str: ...

    def build(self) -> PairTrace: ...


Job = PairTrace | Buildable


def built(job: Job) -> PairTrace:
    return job if isinstance(job, PairTrace) else job.build()


class Sink(Protocol):
    sink: str

    def put(self, row: dict[str, Any], units: list[dict[str, Any]] | None = None) -> bool: ...


class PairRecorder:
    def __init__(
        self,
        sinks: list[Sink],
        *,
        metrics: PairMetrics | None = None,
        store_text: bool = False,
        asr: RoundTripAsr | None = None,
        max_jobs: int = 64,
        max_audio_s: float = 120.0,
        compare: Callable[[Job], Comparison] | None = None,
    ) -> None:
        """`compare`: where pairs are built and compared (a serving gateway passes a `ProcessComparator`'s);
        by default in this worker thread."""
        self.sinks = sinks
        self.compare = compare or self._compare_here
        self.metrics = metrics
        self.store_text = store_text
        self.asr = asr
        self.max_audio_s = max_audio_s
        self.skipped = 0
        self._jobs: queue.Queue[Job | Callable[[], Job] | None] = queue.Queue(maxsize=max_jobs)
        self._thread: threading.Thread | None = None

    def start(self) -> PairRecorder:
        self._thread = threading.Thread(target=self._run, name="shadow-compare", daemon=True)
        self._thread.start()
        return self

    def record(self, pair: Job | Callable[[], Job]) -> None:
        """`pair`, a pair to build where it is compared (reading frames into traces is comparator work), or a
        function returning either (run in the worker, off the event loop)."""
        try:
            self._jobs.put_nowait(pair)
        except queue.Full:
            pair = built(pair() if callable(pair) else pair)
            self.skipped += 1
            if self.metrics:
                self.metrics.compare_skipped.inc()
            row = base_row(pair)
            row["flags"] = sorted({*row["flags"], "metrics_skipped"})
            self._emit(pair.pair_id, Comparison(row))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued pairs reached the sinks (the sinks may still be committing)."""
        done = threading.Event()

        def waiter() -> None:
            self._jobs.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._jobs.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                try:
                    job = job() if callable(job) else job
                    comparison = self.compare(job)
                except Exception as exc:  # a comparator bug must not lose the pair's outcome
                    try:
                        pair = built(job)  # type: ignore[arg-type]
                    except Exception as build_exc:  # a trace that cannot be built: the pair is lost, not the worker
                        log.warning("shadow.trace_error", error=repr(build_exc))
                        continue
                    log.warning("shadow.compare_error", pair_id=pair.pair_id, error=repr(exc))
                    row = base_row(pair)
                    row["flags"] = sorted({*row["flags"], "compare_error"})
                    comparison = Comparison(row)
                self._emit(job.pair_id, comparison)
            finally:
                self._jobs.task_done()

    def _compare_here(self, job: Job) -> Comparison:
        return compare_pair(built(job), store_text=self.store_text, asr=self.asr, max_audio_s=self.max_audio_s)

    def _emit(self, pair_id: str, comparison: Comparison) -> None:
        row = comparison.row
        if self.metrics:
            self._observe(row)
        for sink in self.sinks:
            try:
                sink.put(row, comparison.units)
            except Exception as exc:
                log.warning("shadow.sink_error", sink=sink.sink, pair_id=pair_id, error=repr(exc))

    def _observe(self, row: dict[str, Any]) -> None:
        m = self.metrics
        assert m is not None
        provider, route, kind = row["provider"], row["route"], row["pair_kind"]
        m.pairs.labels(provider, route, kind, row["outcome"]).inc()
        if row["outcome"] != "completed":
            return
        if row.get("wer") is not None:
            m.wer.labels(provider, route, kind).observe(row["wer"])
        delta = candidate_delta_ms(row)
        if delta is not None:
            m.first_output_delta.labels(provider, route, kind).observe(delta / 1000)
        if row.get("duration_ratio") is not None and kind == "candidate":
            m.duration_ratio.labels(provider, route).observe(row["duration_ratio"])
