"""Wiring of the comparison side into the app: the pair recorder's lifecycle and the admin page.

- `SHADOW_RECORDER` (app key): a started `PairRecorder` writing to the SQLite store and/or the log
  sink per `shadow.store` / `shadow.sinks`, present only when `shadow.enabled`; closed (queued pairs
  flushed) on shutdown.
- `GET /_gateway/shadow`: the report page over the store, for `Authorization: Bearer <admin token>`
  (SHA-256 in `admin.token_sha256`). 404 when no admin token is configured, 401 otherwise without a
  valid token. Query `since`, `tenant`, `provider`, `route` filter like the CLI flags.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.addons import ADDONS
from gateway.traffic.bridge import PairSource, TraceAddon, pair_source
from gateway.traffic.comparator import ProcessComparator
from gateway.traffic.page import token_ok
from gateway.traffic.pair_metrics import PairMetrics
from gateway.traffic.recorder import PairRecorder, Sink
from gateway.traffic.report_cli import store_options
from gateway.traffic.verdicts import Threshold

log = structlog.get_logger("gateway.shadow")
GIL_SWITCH_S = 0.0005

SHADOW_RECORDER = web.AppKey("shadow_recorder", PairRecorder)
PAIR_METRICS = web.AppKey("pair_metrics", PairMetrics)
_SETTINGS = web.AppKey("shadow_admin_settings", object)
PAGE_PATH = "/_gateway/shadow"


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    reason = HTTPStatus(status).phrase
    return web.json_response({"detail": {"status": reason, "message": message}}, status=status, headers=headers)


async def shadow_page(request: web.Request) -> web.Response:
    settings = request.app[_SETTINGS]
    token_sha = getattr(getattr(settings, "admin", None), "token_sha256", None)
    if not token_sha:
        return _json_error(404, "Not Found")
    if not token_ok(request.headers.get("Authorization"), token_sha):
        return _json_error(401, "admin token required", **{"WWW-Authenticate": 'Bearer realm="gradium-gateway"'})
    from gateway.traffic.report import build_report, parse_since
    from gateway.traffic.store import load_rows

    q = request.query
    try:
        since = parse_since(q["since"]) if q.get("since") else None
    except ValueError as exc:
        return _json_error(400, str(exc))
    path, _ = store_options(settings)

    def build() -> str:
        from gateway.traffic.page import render_page

        since_ts = time.time() - since if since is not None else None
        rows = load_rows([path], since_ts=since_ts) if Path(path).is_file() else []
        report = build_report(rows, since_s=since, tenant=q.get("tenant"), provider=q.get("provider"),
                              route=q.get("route"), thresholds=settings_thresholds(settings))
        return render_page(report)

    try:
        html = await asyncio.to_thread(build)  # SQLite reads and statistics stay off the event loop
    except ValueError as exc:
        log.warning("shadow.page_error", error=str(exc))
        return _json_error(503, "shadow store unreadable")
    return web.Response(text=html, content_type="text/html", headers={
        "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


def settings_thresholds(settings: Any) -> dict[str, Threshold]:
    """`shadow.report.thresholds: {wer: {absolute: 0.05, relative: 0.5}}` when the settings carry it."""
    raw = getattr(getattr(getattr(settings, "shadow", None), "report", None), "thresholds", None) or {}
    out = {}
    for name, t in dict(raw).items():
        get = t.get if isinstance(t, dict) else lambda k, t=t: getattr(t, k, None)
        if get("absolute") is not None and get("relative") is not None:
            out[name] = Threshold(float(get("absolute")), float(get("relative")))
    return out


def _recorder_ctx(settings: Any) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        shadow = getattr(settings, "shadow", None)
        if not getattr(shadow, "enabled", False):
            yield
            return
        from gateway.traffic.store import LogSink, SqliteStore

        store_cfg = getattr(shadow, "store", None)
        sinks_cfg = list(getattr(shadow, "sinks", ["store", "log"]))
        path, days = store_options(settings)
        sinks: list[Sink] = []
        store: SqliteStore | None = None
        metrics = app[PAIR_METRICS]
        if "store" in sinks_cfg and getattr(store_cfg, "kind", "sqlite") == "sqlite":
            store = SqliteStore(path, retention_days=days, metrics=metrics).start()
            sinks.append(store)
        if "log" in sinks_cfg:
            sinks.append(LogSink(metrics))
        store_text = bool(getattr(store_cfg, "store_text", False))
        # pairs are compared in a child process: in the recorder's thread, the comparison held the GIL
        # the primaries' event loop needs (gateway/traffic/comparator.py)
        comparator = ProcessComparator(store_text=store_text)
        await asyncio.to_thread(comparator.warm)
        # The recorder's thread still hands each pair over (a snapshot of its legs, pickled): while it holds the
        # GIL, a socket that becomes readable waits up to one switch interval (5 ms by default), 0.5 ms here.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
        recorder = PairRecorder(sinks, metrics=metrics, store_text=store_text, compare=comparator.compare)
        app[SHADOW_RECORDER] = recorder.start()
        shadow_machine = _shadow_machine(app)
        if shadow_machine is not None:
            app[ADDONS].register(TraceAddon())  # after the shadow addon, which marks the primary's flow
            shadow_machine.on_pair.append(lambda row, leg: recorder.record(_pair_of(row, leg)))
        try:
            yield
        finally:
            if shadow_machine is not None:
                await shadow_machine.close()  # legs still running end now and reach the recorder first
            await asyncio.to_thread(recorder.close)
            await asyncio.to_thread(comparator.close)
            if store is not None:
                await asyncio.to_thread(store.close)

    return ctx


def _pair_of(row: dict[str, Any], leg: Any) -> Callable[[], PairSource]:
    """The pair's source, taken in the recorder's worker with the time of the leg's end; its frames are read
    into traces (JSON, base64 audio) where it is compared, in the comparator's process."""
    ended = time.time()
    return lambda: pair_source(row, leg, ended)


def _shadow_machine(app: web.Application) -> Any:
    from gateway.traffic.router import TRAFFIC

    traffic = app.get(TRAFFIC)
    return getattr(traffic, "shadow", None)


def install(app: web.Application, settings: Any, registry: Any) -> None:
    app[_SETTINGS] = settings
    app[PAIR_METRICS] = PairMetrics(registry)
    app.router.add_get(PAGE_PATH, shadow_page)
    app.cleanup_ctx.append(_recorder_ctx(settings))
