"""The SQLite store: batched writes on one thread, bounded queue, retention, reading back; the log sink."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from gateway.observability import configure_logging
from gateway.traffic.pair_metrics import PairMetrics
from gateway.traffic.recorder import PairRecorder
from gateway.traffic.store import LogSink, SqliteStore, expand_path, load_rows, prune, read_jsonl
from gateway.traffic.trace import PairTrace


def _row(i: int, started_at: float | None = None, **kw: object) -> dict:
    return {"pair_id": f"p{i:05d}", "started_at": time.time() if started_at is None else started_at,
            "tenant": "acme", "provider": "deepgram", "route": "listen_live", "kind": "stt", "transport": "ws",
            "primary_target": "gradium", "shadow_target": "legacy", "pair_kind": "candidate",
            "outcome": "completed", "flags": ["x"], "wer": 0.1, "err_sub": 1, "err_del": 0, "err_ins": 0,
            "ref_words": 10, "format_match": True, "metrics": {"reference": "s", "eot_delta_ms": 12.5}, **kw}


def _metric(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


def test_rows_round_trip_with_json_columns(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    store = SqliteStore(tmp_path / "s.db", metrics=PairMetrics(reg), flush_interval_s=0.05).start()
    for i in range(3):
        assert store.put(_row(i), [{"pair_id": f"p{i:05d}", "ctx": "a", "interrupted": False,
                                    "started_at": time.time(), "metrics": {"p": {}}}])
    assert store.flush()
    store.close()
    rows = load_rows([str(tmp_path / "s.db")])
    assert [r["pair_id"] for r in rows] == ["p00000", "p00001", "p00002"]
    assert rows[0]["flags"] == ["x"] and rows[0]["metrics"]["eot_delta_ms"] == 12.5
    assert rows[0]["format_match"] is True
    assert _metric(reg, "gateway_shadow_store_rows_total", sink="sqlite", status="written") == 3
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT count(*) FROM shadow_units").fetchone() == (3,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_many_rows_commit_in_batches(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", batch_rows=100, flush_interval_s=0.05).start()
    for i in range(1000):
        store.put(_row(i))
    assert store.flush(20)
    store.close()
    assert len(load_rows([str(tmp_path / "s.db")])) == 1000 and store.written == 1000


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    store = SqliteStore(tmp_path / "s.db", max_queue=5, metrics=PairMetrics(reg))
    # not started: nothing drains the queue, so the 6th put must return at once
    t0 = time.monotonic()
    results = [store.put(_row(i)) for i in range(8)]
    assert time.monotonic() - t0 < 1.0
    assert results == [True] * 5 + [False] * 3
    assert store.dropped == 3
    assert _metric(reg, "gateway_shadow_store_rows_total", sink="sqlite", status="dropped") == 3


def test_retention_deletes_old_rows(tmp_path: Path) -> None:
    now = time.time()
    store = SqliteStore(tmp_path / "s.db", retention_days=2, flush_interval_s=0.05).start()
    store.put(_row(1, now - 3 * 86400))
    store.put(_row(2, now - 1 * 86400))
    assert store.flush()
    store.close()
    # the writer's first pass (right after its first batch) already removed the old row
    assert [r["pair_id"] for r in load_rows([str(tmp_path / "s.db")])] == ["p00002"]
    conn = sqlite3.connect(tmp_path / "s.db")
    assert prune(conn, 0.5, now) == 1 and load_rows([str(tmp_path / "s.db")]) == []


def test_retention_runs_when_the_writer_starts(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db", flush_interval_s=0.05).start()
    s.put(_row(1, time.time() - 30 * 86400))
    s.flush()
    s.close()
    SqliteStore(tmp_path / "s.db", retention_days=14, flush_interval_s=0.05).start().close()
    assert load_rows([str(tmp_path / "s.db")]) == []


def test_fleet_files_merge_by_glob_and_dedupe(tmp_path: Path) -> None:
    for name, ids in (("a", [1, 2]), ("b", [2, 3])):
        s = SqliteStore(tmp_path / f"shadow-{name}.db", flush_interval_s=0.05).start()
        for i in ids:
            s.put(_row(i))
        s.flush()
        s.close()
    rows = load_rows([str(tmp_path / "shadow-*.db")])
    assert sorted(r["pair_id"] for r in rows) == ["p00001", "p00002", "p00003"]
    assert "{hostname}" not in expand_path("/x/shadow-{hostname}-{pid}.db")


def test_missing_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_rows([str(tmp_path / "nope.db")])
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)")
    with pytest.raises(ValueError, match="not a shadow store"):
        load_rows([str(tmp_path / "other.db")])


def test_log_sink_writes_one_json_line_that_reads_back(tmp_path: Path) -> None:
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        LogSink().put(_row(7))
    finally:
        structlog.reset_defaults()
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["event"] == "shadow.comparison" and line["pair_id"] == "p00007" and line["wer"] == 0.1
    path = tmp_path / "gateway.log"
    path.write_text("not json\n" + json.dumps({"event": "other"}) + "\n" + buf.getvalue())
    rows = list(read_jsonl(str(path)))
    assert len(rows) == 1 and rows[0]["metrics"]["reference"] == "s"


def test_recorder_compares_off_thread_and_stores(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    metrics = PairMetrics(reg)
    store = SqliteStore(tmp_path / "s.db", metrics=metrics, flush_interval_s=0.05).start()
    rec = PairRecorder([store], metrics=metrics).start()
    pair = PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt", transport="ws",
                          primary_side="gradium", shadow_side="legacy")
    pair.primary.sent_audio(640, 0.02, t=0.0)
    pair.shadow.sent_audio(640, 0.02, t=0.0)
    pair.primary.final("the cat sat down", t=300.0)
    pair.shadow.final("the cat sat town", t=350.0)
    rec.record(pair)
    assert rec.flush() and store.flush()
    rec.close()
    store.close()
    (row,) = load_rows([str(tmp_path / "s.db")])
    assert row["wer"] == 0.25 and row["first_final_ms_p"] == 300.0
    assert _metric(reg, "gateway_shadow_wer_count", provider="deepgram", route="listen_live",
                   pair_kind="candidate") == 1
    # candidate (gradium primary) answered 50 ms before the legacy reference
    assert _metric(reg, "gateway_shadow_first_output_delta_seconds_bucket", provider="deepgram",
                   route="listen_live", pair_kind="candidate", le="-0.05") == 1
    assert _metric(reg, "gateway_shadow_pairs_total", provider="deepgram", route="listen_live",
                   pair_kind="candidate", outcome="completed") == 1


def test_recorder_stores_without_metrics_when_the_comparator_is_busy(tmp_path: Path) -> None:
    class Sink:
        sink = "mem"

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def put(self, row: dict, units: list | None = None) -> bool:
            self.rows.append(row)
            return True

    sink = Sink()
    rec = PairRecorder([sink], max_jobs=2)  # not started: the job queue fills up
    for _ in range(5):
        rec.record(PairTrace.open(tenant="t", provider="deepgram", route="listen_live", kind="stt",
                                  transport="ws", primary_side="gradium", shadow_side="legacy"))
    assert rec.skipped == 3 and len(sink.rows) == 3
    assert all("metrics_skipped" in r["flags"] for r in sink.rows)


async def test_app_recorder_lifecycle_writes_store_and_log(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from aiohttp import web

    from gateway.traffic.admin import PAIR_METRICS, SHADOW_RECORDER, _recorder_ctx

    settings = SimpleNamespace(shadow=SimpleNamespace(
        enabled=True, sinks=["store", "log"],
        store=SimpleNamespace(kind="sqlite", path=str(tmp_path / "{pid}.db"), retention_days=3, store_text=True)))
    app = web.Application()
    reg = CollectorRegistry()
    app[PAIR_METRICS] = PairMetrics(reg)
    buf = io.StringIO()
    configure_logging("info", stream=buf)
    try:
        ctx = _recorder_ctx(settings)(app)
        await ctx.__anext__()
        pair = PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt",
                              transport="ws", primary_side="legacy", shadow_side="gradium")
        pair.primary.final("hello world")
        pair.shadow.final("hello world")
        app[SHADOW_RECORDER].record(pair)
        with pytest.raises(StopAsyncIteration):
            await ctx.__anext__()  # shutdown: queued pairs are compared and committed first
    finally:
        structlog.reset_defaults()
    (db,) = tmp_path.glob("*.db")
    (row,) = load_rows([str(db)])
    assert row["pair_id"] == pair.pair_id and row["final_text_s"] == "hello world" and row["wer"] == 0.0
    logged = [json.loads(x) for x in buf.getvalue().splitlines() if "shadow.comparison" in x]
    assert [x["pair_id"] for x in logged] == [pair.pair_id]
    assert _metric(reg, "gateway_shadow_store_rows_total", sink="log", status="written") == 1


async def test_app_without_shadow_has_no_recorder() -> None:
    from types import SimpleNamespace

    from aiohttp import web

    from gateway.traffic.admin import SHADOW_RECORDER, _recorder_ctx

    app = web.Application()
    ctx = _recorder_ctx(SimpleNamespace())(app)
    await ctx.__anext__()
    assert SHADOW_RECORDER not in app
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()
