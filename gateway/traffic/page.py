"""The shadow report as one self-contained HTML page (inline CSS and SVG; no script, no external asset).

Served at `/_gateway/shadow` to admins (Bearer token whose SHA-256 is `admin.token_sha256`; 404 when
that is not configured, 401 without or with a wrong token) and written by `shadow report --format html`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from html import escape
from typing import Any

from gateway.traffic import svg

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#f7f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}.sub{color:#667;margin-bottom:16px}
section.group{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 12px}.card{border:1px solid #e3e6ec;border-radius:6px;
padding:6px 10px;min-width:110px}.card b{display:block;font-size:17px}.card span{color:#667;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fbfcfd;border:1px solid #eef0f4;border-radius:6px}
.ct{font-size:13px;font-weight:600;fill:#1d2330}.xl{font-size:10px;fill:#556}
.yl{font-size:10px;fill:#556;text-anchor:end}.lg{font-size:11px;fill:#334}.empty{font-size:12px;fill:#99a;
text-anchor:middle}.ax{stroke:#99a}.flag{color:#fff;background:#c0392b;border-radius:4px;padding:1px 6px}
.ok{color:#fff;background:#3a9a4a;border-radius:4px;padding:1px 6px}table{border-collapse:collapse;margin-top:10px}
td,th{border-bottom:1px solid #eef0f4;padding:3px 8px;text-align:left;font-size:12px}th{color:#556}
code{font-size:11px}
"""


def _f(v: Any, digits: int = 3, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return (f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}") + unit
    return f"{v}{unit}"


def _ci(ci: Any) -> str:
    return f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""


def _card(label: str, value: str) -> str:
    return f'<div class="card"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _cards(g: dict[str, Any]) -> str:
    d = g["first_output_delta_ms"]
    cards = [_card("pairs (candidate / noise)", f"{g['candidates']} / {g['noise_pairs']}"),
             _card("first-output Δ p50 / p90", f"{_f(d['p50'], unit=' ms')} / {_f(d['p90'], unit=' ms')}")]
    if g["kind"] == "stt":
        s = g["stt"]
        cards += [_card("pooled WER candidate" + _ci(s["pooled_wer_ci"]), _f(s["pooled_wer"])),
                  _card("pooled WER noise" + _ci(s["noise_pooled_wer_ci"]), _f(s["noise_pooled_wer"])),
                  _card("WER p50 / p90", f"{_f(s['wer_p50'])} / {_f(s['wer_p90'])}"),
                  _card("turns matched / missed / extra",
                        "{eot_matched} / {eot_missed} / {eot_extra}".format(**s["turns"]))]
    else:
        t = g["tts"]
        cards += [_card("TTFA p / s (median)", f"{_f(t['ttfa_ms']['p'], unit=' ms')} / "
                                               f"{_f(t['ttfa_ms']['s'], unit=' ms')}"),
                  _card("duration ratio p10 / p50 / p90", " / ".join(_f(t["duration_ratio"][k])
                                                                    for k in ("p10", "p50", "p90"))),
                  _card("LUFS Δ p50", _f(t["lufs_delta_p50"], unit=" dB")),
                  _card("format mismatches", str(t["format_mismatches"]))]
    spend = ", ".join(f"{k}: {int(v['tts_chars'])} chars, {v['stt_seconds']:.0f} s" for k, v in g["spend"].items())
    cards.append(_card("shadow spend", spend or "-"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _verdicts(g: dict[str, Any]) -> str:
    if not g["verdicts"]:
        return ""
    items = []
    for v in g["verdicts"]:
        cls = "flag" if v["flagged"] else "ok"
        items.append(f'<span class="{cls}" data-verdict="{escape(v["metric"])}" data-flagged="{int(v["flagged"])}">'
                     f'{escape(v["metric"])}: {_f(v["raw"])} vs noise {_f(v["noise"])}</span>')
    return '<p class="verdicts">' + " ".join(items) + "</p>"


def _worst_table(g: dict[str, Any]) -> str:
    if not g["worst"]:
        return ""
    rows = []
    for w in g["worst"]:
        when = datetime.fromtimestamp(w["started_at"] or 0, UTC).strftime("%Y-%m-%d %H:%M")
        rows.append(f'<tr data-pair="{escape(w["pair_id"])}"><td><code>{escape(w["pair_id"])}</code></td>'
                    f"<td>{when}</td><td>{escape(str(w.get('tenant') or ''))}</td><td>{_f(w['wer'])}</td>"
                    f"<td>{_f(w['first_output_delta_ms'], unit=' ms')}</td><td>{_f(w['duration_ratio'])}</td>"
                    f"<td>{escape(w.get('word_diff') or ', '.join(w['flags']))}</td></tr>")
    return ('<table class="worst"><thead><tr><th>worst pairs</th><th>started (UTC)</th><th>tenant</th><th>WER</th>'
            "<th>first-output Δ</th><th>duration ratio</th><th>diff / flags</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _charts(g: dict[str, Any]) -> str:
    h = g["hist"]
    charts = [svg.outcome_bar("outcomes", "Outcomes (candidate pairs)", g["outcomes"])]
    if g["kind"] == "stt":
        charts.append(svg.histogram("wer", "WER per pair: candidate vs noise", [
            ("candidate", svg.CANDIDATE, h["wer"]["candidate"]), ("noise", svg.NOISE, h["wer"]["noise"])]))
    what = "TTFA" if g["kind"] == "tts" else "First-final"
    delta_title = f"{what} Δ (candidate - reference, ms)"
    charts.append(svg.histogram("delta", delta_title, [("candidate", svg.CANDIDATE, h["first_output_delta_ms"])]))
    if g["kind"] == "tts":
        charts.append(svg.histogram("duration", "Duration ratio (candidate ÷ reference)",
                                    [("candidate", svg.CANDIDATE, h["duration_ratio"])]))
        trend = [(d["day"], d["median_delta_ms"]) for d in g["daily"]]
        charts.append(svg.line_chart("trend", "Daily median TTFA Δ (ms)", trend, "{:.0f}"))
    else:
        trend = [(d["day"], d["pooled_wer"]) for d in g["daily"]]
        charts.append(svg.line_chart("trend", "Daily pooled WER", trend))
    return '<div class="charts">' + "".join(charts) + "</div>"


def _group(g: dict[str, Any]) -> str:
    title = f"{g['provider']} {g['route']} ({g['kind']}): {g['primary']} primary, {g['candidate_target']} candidate"
    shared = ' <span class="flag">shared keys</span>' if g["shared_keys"] else ""
    return (f'<section class="group" data-provider="{escape(g["provider"] or "")}" '
            f'data-route="{escape(g["route"] or "")}" data-primary="{escape(g["primary"] or "")}">'
            f"<h2>{escape(title)}{shared}</h2>{_verdicts(g)}{_cards(g)}{_charts(g)}{_worst_table(g)}</section>")


def render_page(report: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(report["generated_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    filters = ", ".join(f"{k}={v}" for k, v in report["filters"].items() if v) or "all"
    since = f"last {report['since_s'] / 3600:g} h" if report.get("since_s") else "all time"
    body = "".join(_group(g) for g in report["groups"]) or "<p>No shadow pairs stored yet.</p>"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Shadow report</title><style>{CSS}</style></head><body>"
            f"<h1>Shadow report</h1><div class=\"sub\">{report['pairs']} pairs · {escape(since)} · "
            f"filters: {escape(filters)} · generated {when}</div>{body}</body></html>\n")


def token_ok(header: str | None, token_sha256: str) -> bool:
    """`Authorization: Bearer <token>` whose SHA-256 is the configured one (constant-time compare)."""
    if not header or not header.lower().startswith("bearer "):
        return False
    digest = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    return hmac.compare_digest(digest, token_sha256.lower())
