"""Where comparison rows go: SQLite (default), the `shadow.comparison` log line, and reading them back.

The writer never slows a request: `put` is a non-blocking enqueue into a bounded queue; one thread
owns the SQLite connection and commits in batches (every second or 500 rows, WAL mode). A full queue
drops the row and counts it (`gateway_shadow_store_rows_total{status="dropped"}`). Rows older than
`retention_days` are deleted at start and then daily.

Several replicas (traffic.md §9): a SQLite file belongs to one process. For a fleet, either
- give every replica its own file with a placeholder in the path, `path: /data/shadow-{hostname}.db`
  (`{hostname}`, `{pid}` are expanded), collect the files, and report over all of them at once:
  `gradium-gateway shadow report --db '/data/shadow-*.db'` (globs are expanded; rows are merged and
  de-duplicated by `pair_id`); or
- ship the `log` sink's `shadow.comparison` JSON lines through the log pipeline and report over them:
  `gradium-gateway shadow report --jsonl gateway.log`.
A ClickHouse/Postgres sink (traffic.md §6) is not built; the row dicts are its JSONEachRow payload.
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway.traffic.compare import PAIR_COLUMNS, UNIT_COLUMNS
from gateway.traffic.pair_metrics import PairMetrics

log = structlog.get_logger("gateway.shadow")

DAY_S = 86400.0
_REAL = {"started_at", "ended_at", "lag_p95_ms", "shadow_connect_ms", "cost_stt_seconds", "wer",
         "first_final_ms_p", "first_final_ms_s", "emission_ms_p", "emission_ms_s", "ttfa_ms_p", "ttfa_ms_s",
         "duration_ratio", "lufs_delta", "rt_wer_p", "rt_wer_s"}
_INT = {"cost_tts_chars", "err_sub", "err_del", "err_ins", "ref_words", "format_match", "interrupted"}
_JSON = {"flags", "metrics"}


def _sql_type(col: str) -> str:
    return "REAL" if col in _REAL else "INTEGER" if col in _INT else "TEXT"


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS shadow_pairs ("
    + ", ".join(f"{c} {_sql_type(c)}{' PRIMARY KEY' if c == 'pair_id' else ''}" for c in PAIR_COLUMNS)
    + ", metrics TEXT);\n"
    "CREATE INDEX IF NOT EXISTS shadow_pairs_started ON shadow_pairs (started_at);\n"
    "CREATE INDEX IF NOT EXISTS shadow_pairs_route ON shadow_pairs (provider, route, started_at);\n"
    "CREATE TABLE IF NOT EXISTS shadow_units ("
    + ", ".join(f"{c} {_sql_type(c)}" for c in UNIT_COLUMNS)
    + ", started_at REAL, metrics TEXT, PRIMARY KEY (pair_id, ctx));\n"
)
PAIR_FIELDS = (*PAIR_COLUMNS, "metrics")
UNIT_FIELDS = (*UNIT_COLUMNS, "started_at", "metrics")


def expand_path(path: str | os.PathLike[str]) -> str:
    """`{hostname}` and `{pid}` make one file per replica (see the module docstring)."""
    return str(path).replace("{hostname}", socket.gethostname()).replace("{pid}", str(os.getpid()))


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _cell(col: str, v: Any) -> Any:
    if col in _JSON:
        return orjson.dumps(v if v is not None else ([] if col == "flags" else {})).decode()
    if isinstance(v, bool):
        return int(v)
    return v


def _insert(table: str, fields: tuple[str, ...]) -> str:
    return f"INSERT OR REPLACE INTO {table} ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})"


def write_rows(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]], units: Iterable[dict[str, Any]] = ()) -> None:
    """Upsert rows (by pair_id) and unit rows in one transaction."""
    with conn:
        conn.executemany(_insert("shadow_pairs", PAIR_FIELDS), [tuple(_cell(c, r.get(c)) for c in PAIR_FIELDS)
                                                                for r in rows])
        conn.executemany(_insert("shadow_units", UNIT_FIELDS), [tuple(_cell(c, u.get(c)) for c in UNIT_FIELDS)
                                                                for u in units])


def prune(conn: sqlite3.Connection, retention_days: float, now: float | None = None) -> int:
    cutoff = (time.time() if now is None else now) - retention_days * DAY_S
    with conn:
        n = conn.execute("DELETE FROM shadow_pairs WHERE started_at < ?", (cutoff,)).rowcount
        conn.execute("DELETE FROM shadow_units WHERE started_at < ?", (cutoff,))
    return n


@dataclass(slots=True)
class _Item:
    row: dict[str, Any]
    units: list[dict[str, Any]]
    queued_at: float


class SqliteStore:
    """One writer thread, batched commits, a bounded queue that drops (and counts) on overflow."""

    sink = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_days: float = 14,
        max_queue: int = 10_000,
        batch_rows: int = 500,
        flush_interval_s: float = 1.0,
        metrics: PairMetrics | None = None,
    ) -> None:
        self.path = expand_path(path)
        self.retention_days = retention_days
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.metrics = metrics
        self.written = self.dropped = self.errors = 0
        self._q: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._flushed = threading.Condition()
        self._next_prune = 0.0

    def start(self) -> SqliteStore:
        self._conn = connect(self.path)  # opened here so a bad path fails at startup, not silently later
        self._thread = threading.Thread(target=self._run, name="shadow-store", daemon=True)
        self._thread.start()
        return self

    def put(self, row: dict[str, Any], units: list[dict[str, Any]] | None = None) -> bool:
        try:
            self._q.put_nowait(_Item(row, units or [], time.monotonic()))
        except queue.Full:
            self.dropped += 1
            self._count("dropped")
            return False
        if self.metrics:
            self.metrics.store_queue.labels(self.sink).set(self._q.qsize())
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self._q.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flushed.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _count(self, status: str, n: int = 1) -> None:
        if self.metrics:
            self.metrics.store_rows.labels(self.sink, status).inc(n)

    def _run(self) -> None:
        assert self._conn is not None
        conn = self._conn
        stop = False
        try:
            while not stop:
                batch: list[_Item] = []
                deadline = time.monotonic() + self.flush_interval_s
                while len(batch) < self.batch_rows:
                    try:
                        item = self._q.get(timeout=max(deadline - time.monotonic(), 0.0) if batch else 1.0)
                    except queue.Empty:
                        break
                    if item is None:
                        self._q.task_done()
                        stop = True
                        break
                    batch.append(item)
                if batch:
                    self._write(conn, batch)
                self._maybe_prune(conn)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        try:
            write_rows(conn, [i.row for i in batch], [u for i in batch for u in i.units])
            self.written += len(batch)
            self._count("written", len(batch))
            if self.metrics:
                now = time.monotonic()
                for i in batch:
                    self.metrics.store_lag.labels(self.sink).observe(now - i.queued_at)
        except sqlite3.Error as exc:
            self.errors += len(batch)
            self._count("error", len(batch))
            log.warning("shadow.store_error", path=self.path, rows=len(batch), error=str(exc))
        finally:
            for _ in batch:
                self._q.task_done()
            if self.metrics:
                self.metrics.store_queue.labels(self.sink).set(self._q.qsize())
            with self._flushed:
                self._flushed.notify_all()

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + DAY_S
        try:
            n = prune(conn, self.retention_days, now)
        except sqlite3.Error as exc:
            log.warning("shadow.store_prune_error", path=self.path, error=str(exc))
            return
        if n:
            log.info("shadow.store_pruned", path=self.path, rows=n, retention_days=self.retention_days)


class LogSink:
    """One structlog `shadow.comparison` line per pair: the row as JSON, for any log pipeline."""

    sink = "log"

    def __init__(self, metrics: PairMetrics | None = None) -> None:
        self.metrics = metrics

    def put(self, row: dict[str, Any], units: list[dict[str, Any]] | None = None) -> bool:
        log.info("shadow.comparison", **row, units=units or [])
        if self.metrics:
            self.metrics.store_rows.labels(self.sink, "written").inc()
        return True


# -- reading ------------------------------------------------------------------------------------


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for col in _JSON:
        v = row.get(col)
        if isinstance(v, str | bytes):
            row[col] = orjson.loads(v)
    if row.get("format_match") is not None:
        row["format_match"] = bool(row["format_match"])
    return row


def _expand(patterns: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in patterns:
        matches = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        out.extend(matches)
    return out


def read_db(path: str, since_ts: float | None = None) -> Iterator[dict[str, Any]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such store: {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    conn.row_factory = sqlite3.Row
    try:
        sql, args = "SELECT * FROM shadow_pairs", ()
        if since_ts is not None:
            sql, args = sql + " WHERE started_at >= ?", (since_ts,)
        for r in conn.execute(sql + " ORDER BY started_at", args):
            yield _decode(dict(r))
    except sqlite3.OperationalError as exc:
        raise ValueError(f"{path}: not a shadow store ({exc})") from exc
    finally:
        conn.close()


def read_jsonl(path: str) -> Iterator[dict[str, Any]]:
    """`shadow.comparison` lines of a log file (other lines are skipped)."""
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line.startswith(b"{"):
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj.get("event") == "shadow.comparison" and obj.get("pair_id"):
                yield _decode({k: obj.get(k) for k in PAIR_FIELDS})


def load_rows(dbs: Iterable[str] = (), jsonl: Iterable[str] = (), since_ts: float | None = None
              ) -> list[dict[str, Any]]:
    """Rows from every store file and log file, merged and de-duplicated by pair_id, oldest first."""
    rows: dict[str, dict[str, Any]] = {}
    for path in _expand(dbs):
        for r in read_db(path, since_ts):
            rows[r["pair_id"]] = r
    for path in _expand(jsonl):
        for r in read_jsonl(path):
            if since_ts is None or (r.get("started_at") or 0) >= since_ts:
                rows[r["pair_id"]] = r
    return sorted(rows.values(), key=lambda r: r.get("started_at") or 0)
