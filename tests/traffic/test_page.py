"""The admin page `/_gateway/shadow`: auth, and the charts as Chromium renders them match the stored rows."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import Settings
from gateway.traffic.report import DELTA_BINS, RATIO_BINS, WER_BINS

from .browser import chromium
from .shadow_rows import fill_store, make_rows

TOKEN = "admin-secret-token"
ADMIN = {"admin": {"token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}}
DB = "gateway-shadow.db"  # the default `shadow.store.path`, relative to the working directory


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    fill_store(tmp_path / DB, make_rows(now=time.time()))
    return tmp_path


async def _client(settings: Settings) -> TestClient:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


async def test_page_is_404_without_an_admin_token_configured(store_dir: Path) -> None:
    client = await _client(Settings())
    try:
        resp = await client.get("/_gateway/shadow", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 404
    finally:
        await client.close()


async def test_page_needs_the_admin_bearer_token(store_dir: Path) -> None:
    client = await _client(Settings.model_validate(ADMIN))
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = await client.get("/_gateway/shadow", headers=headers)
            assert resp.status == 401, headers
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["detail"]["message"] == "admin token required"
        resp = await client.get("/_gateway/shadow", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        html = await resp.text()
        assert "<script" not in html and "deepgram listen_live" in html
        resp = await client.get("/_gateway/shadow?since=soon", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 400
        resp = await client.get("/_gateway/shadow?provider=elevenlabs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert "deepgram listen_live" not in await resp.text()
    finally:
        await client.close()


def _bins(values: list[float], edges: tuple[float, ...], open_low: bool) -> list[int]:
    """Independent re-count of the histograms the page must show."""
    cuts = ([float("-inf")] if open_low else []) + list(edges) + [float("inf")]
    counts = [0] * (len(cuts) - 1)
    for v in (v for v in values if v is not None):
        i = max(j for j in range(len(cuts) - 1) if v >= cuts[j] or (j == 0 and not open_low))
        counts[i] += 1
    return counts


def _expected(db: Path) -> dict[str, dict[str, list[int] | dict[str, int]]]:
    conn = sqlite3.connect(db)
    out: dict[str, dict] = {}
    for route, kind in conn.execute("SELECT DISTINCT route, kind FROM shadow_pairs"):
        def q(sql: str, route: str = route) -> list:
            return [r[0] for r in conn.execute(sql, (route,))]

        done = "route = ? AND outcome = 'completed'"
        if kind == "stt":
            deltas = q(f"SELECT first_final_ms_p - first_final_ms_s FROM shadow_pairs WHERE {done} "
                       "AND pair_kind = 'candidate'")  # the primary (gradium) is the candidate here
        else:
            deltas = q(f"SELECT ttfa_ms_s - ttfa_ms_p FROM shadow_pairs WHERE {done} AND pair_kind = 'candidate'")
        out[route] = {
            "outcomes": dict(Counter(q("SELECT outcome FROM shadow_pairs WHERE route = ? "
                                       "AND pair_kind = 'candidate'"))),
            "wer/candidate": _bins(q(f"SELECT wer FROM shadow_pairs WHERE {done} AND pair_kind = 'candidate'"),
                                   WER_BINS, False),
            "wer/noise": _bins(q(f"SELECT wer FROM shadow_pairs WHERE {done} AND pair_kind = 'noise'"),
                               WER_BINS, False),
            "delta/candidate": _bins(deltas, DELTA_BINS, True),
            "duration/candidate": _bins(q(f"SELECT duration_ratio FROM shadow_pairs WHERE {done} "
                                          "AND pair_kind = 'candidate' AND duration_ratio IS NOT NULL"),
                                        RATIO_BINS, True),
            "days": len(q("SELECT DISTINCT date(started_at, 'unixepoch') FROM shadow_pairs WHERE route = ?")),
        }
    return out


MARKS_JS = """JSON.stringify({
  bars: [...document.querySelectorAll('rect.bar')].map(r => ({
    route: r.closest('section').dataset.route, chart: r.closest('svg').dataset.chart,
    series: r.dataset.series, bin: +r.dataset.bin, count: +r.dataset.count,
    h: r.getBoundingClientRect().height, plot: 136 * r.closest('svg').clientHeight / 200})),
  segs: [...document.querySelectorAll('rect.seg')].map(r => ({
    route: r.closest('section').dataset.route, outcome: r.dataset.outcome, count: +r.dataset.count,
    w: r.getBoundingClientRect().width})),
  points: [...document.querySelectorAll('circle.pt')].map(c => c.closest('section').dataset.route),
  worst: [...document.querySelectorAll('table.worst tbody tr')].map(t => t.closest('section').dataset.route),
  scripts: document.scripts.length,
})"""


@pytest.fixture
async def gateway_url(store_dir: Path) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(Settings.model_validate(ADMIN)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_chromium_renders_charts_drawn_from_the_stored_rows(store_dir: Path, gateway_url: str) -> None:
    import json

    expected = _expected(store_dir / DB)
    async with chromium(1400, 1000) as new_page:
        page = await new_page()
        await page.goto(f"{gateway_url}/_gateway/shadow", {"Authorization": f"Bearer {TOKEN}"})
        assert await page.evaluate("document.title") == "Shadow report"
        marks = json.loads(await page.evaluate(MARKS_JS))
        shot = store_dir / "shadow-page.png"
        await page.screenshot(shot)
        if out := os.environ.get("SHADOW_SCREENSHOT"):
            shutil.copy(shot, out)
        assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        anonymous = await new_page()
        await anonymous.goto(f"{gateway_url}/_gateway/shadow")
        assert "admin token required" in await anonymous.evaluate("document.body.innerText")

    assert marks["scripts"] == 0
    for route, exp in expected.items():
        bars = [b for b in marks["bars"] if b["route"] == route]
        for key in ("wer/candidate", "wer/noise", "delta/candidate", "duration/candidate"):
            chart, series = key.split("/")
            got = [b["count"] for b in sorted(bars, key=lambda b: b["bin"])
                   if b["chart"] == chart and b["series"] == series]
            drawn = (route == "listen_live") if chart == "wer" else (route == "tts_ws") if chart == "duration" \
                else True
            assert got == (exp[key] if drawn else []), (route, key)
        # heights as rendered: the tallest bar of a chart fills the plot, the others are in proportion
        for chart in {b["chart"] for b in bars}:
            cb = [b for b in bars if b["chart"] == chart]
            top = max(b["count"] for b in cb)
            for b in cb:
                assert b["h"] == pytest.approx(b["count"] / top * b["plot"], abs=1.0), (route, chart, b)
        segs = [s for s in marks["segs"] if s["route"] == route]
        assert {s["outcome"]: s["count"] for s in segs} == exp["outcomes"]
        total_w, total_n = sum(s["w"] for s in segs), sum(s["count"] for s in segs)
        for s in segs:
            assert s["w"] == pytest.approx(s["count"] / total_n * total_w, abs=1.0)
        assert marks["points"].count(route) == exp["days"]
        assert marks["worst"].count(route) == 10


def test_thresholds_from_settings() -> None:
    from types import SimpleNamespace

    from gateway.traffic.admin import settings_thresholds
    from gateway.traffic.verdicts import Threshold

    s = SimpleNamespace(shadow=SimpleNamespace(report=SimpleNamespace(thresholds={
        "wer": {"absolute": 0.1, "relative": 0.2}, "lufs": SimpleNamespace(absolute=2, relative=1)})))
    assert settings_thresholds(s) == {"wer": Threshold(0.1, 0.2), "lufs": Threshold(2.0, 1.0)}
    assert settings_thresholds(Settings()) == {}
