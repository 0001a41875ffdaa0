"""The shadow report: stored pair rows summarized per (provider, route, primary side) — traffic.md §7.

`build_report(rows, ...)` is pure (rows in, a JSON-able dict out); `render(report, fmt)` turns it into
a text table, JSON, CSV or the HTML page (`gateway.traffic.page`). The CLI `gradium-gateway shadow
report` and the admin page `/_gateway/shadow` both go through here, so they always agree.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.traffic.verdicts import (
    Row,
    Threshold,
    bootstrap_median,
    bootstrap_pooled_wer,
    candidate_delta_ms,
    median_stat,
    pooled_wer,
    quantile,
    values,
    verdicts,
)

WER_BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # edges; the last bin takes everything >= 1
DELTA_BINS = (-500, -200, -100, -50, -20, 0, 20, 50, 100, 200, 500)  # ms, open-ended on both sides
RATIO_BINS = (0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0)
WORST_N = 10

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(text: str) -> float:
    """`30m`, `24h`, `7d` -> seconds."""
    m = _SINCE.match(text.strip())
    if not m:
        raise ValueError(f"--since {text!r}: expected a number and one of s, m, h, d (e.g. 24h)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def histogram(xs: Sequence[float], edges: Sequence[float], open_low: bool = False) -> list[dict[str, Any]]:
    """Counts per bin: [e0, e1), ..., [e_last, inf); with `open_low` also (-inf, e0)."""
    bins: list[tuple[float, float]] = ([(-math.inf, edges[0])] if open_low else []) + [
        (edges[i], edges[i + 1]) for i in range(len(edges) - 1)] + [(edges[-1], math.inf)]
    counts = [0] * len(bins)
    for x in xs:
        for i, (lo, hi) in enumerate(bins):
            if lo <= x < hi or (i == 0 and x < lo and not open_low):
                counts[i] += 1
                break
    return [{"lo": None if math.isinf(lo) else lo, "hi": None if math.isinf(hi) else hi, "count": c}
            for (lo, hi), c in zip(bins, counts, strict=True)]


def _day(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0, UTC).strftime("%Y-%m-%d")


def _wer_of(row: Row) -> float | None:
    w = row.get("wer")
    return float(w) if isinstance(w, int | float) else None


def _other(side: str) -> str:
    return "legacy" if side == "gradium" else "gradium"


def _q(xs: Sequence[float], *qs: float) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": quantile(xs, q) for q in qs}


def _leg_values(rows: Sequence[Row], col: str) -> dict[str, float | None]:
    return {k: median_stat(values(rows, lambda r, c=f"{col}_{k}": r.get(c))) for k in ("p", "s")}


def _metric_leg(rows: Sequence[Row], name: str) -> dict[str, float | None]:
    return {k: median_stat(values(rows, lambda r, k=k: ((r.get("metrics") or {}).get(k) or {}).get(name)))
            for k in ("p", "s")}


def _word_diff(row: Row) -> str | None:
    p, s = row.get("final_text_p"), row.get("final_text_s")
    if p is None or s is None:
        return None
    from gateway.traffic.text_metrics import normalize

    ref_p = (row.get("metrics") or {}).get("reference", "s") == "p"
    ref, hyp = (p, s) if ref_p else (s, p)
    import jiwer

    ref_n, hyp_n = normalize(ref), normalize(hyp)
    if not ref_n or not hyp_n:
        return f"-{ref_n}- +{hyp_n}+"
    out = jiwer.process_words(ref_n, hyp_n)
    r, h = out.references[0], out.hypotheses[0]
    parts = []
    for c in out.alignments[0]:
        rw, hw = " ".join(r[c.ref_start_idx:c.ref_end_idx]), " ".join(h[c.hyp_start_idx:c.hyp_end_idx])
        parts.append({"equal": rw, "substitute": f"[{rw}→{hw}]", "delete": f"-{rw}-", "insert": f"+{hw}+"}[c.type])
    return " ".join(parts)


def _worst(rows: Sequence[Row], kind: str) -> list[dict[str, Any]]:
    def badness(r: Row) -> float:
        if kind == "stt":
            w = _wer_of(r)
            return -1 if w is None else w
        d = candidate_delta_ms(r)
        ratio = r.get("duration_ratio")
        return max(abs(d) / 1000 if d is not None else 0, abs(math.log(ratio)) if ratio and ratio > 0 else 0)

    ranked = sorted((r for r in rows if r.get("outcome") == "completed" and r.get("pair_kind") != "noise"),
                    key=badness, reverse=True)[:WORST_N]
    out = []
    for r in ranked:
        item = {"pair_id": r["pair_id"], "started_at": r.get("started_at"), "tenant": r.get("tenant"),
                "wer": _wer_of(r), "first_output_delta_ms": candidate_delta_ms(r),
                "duration_ratio": r.get("duration_ratio"), "flags": r.get("flags") or []}
        diff = _word_diff(r)
        if diff is not None:
            item["word_diff"] = diff
        out.append(item)
    return out


def _spend(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    spend: dict[str, dict[str, float]] = defaultdict(lambda: {"tts_chars": 0, "stt_seconds": 0.0})
    for r in rows:
        s = spend[r.get("shadow_target") or "?"]
        s["tts_chars"] += r.get("cost_tts_chars") or 0
        s["stt_seconds"] += r.get("cost_stt_seconds") or 0.0
    return dict(spend)


def _daily(cands: Sequence[Row]) -> list[dict[str, Any]]:
    by_day: dict[str, list[Row]] = defaultdict(list)
    for r in cands:
        by_day[_day(r.get("started_at"))].append(r)
    return [{"day": d, "pairs": len(rs), "pooled_wer": pooled_wer(rs),
             "median_delta_ms": median_stat(values(rs, candidate_delta_ms))} for d, rs in sorted(by_day.items())]


def _group(rows: Sequence[Row], thresholds: dict[str, Threshold] | None) -> dict[str, Any]:
    first = rows[0]
    kind = first.get("kind")
    done = [r for r in rows if r.get("outcome") == "completed"]
    cands = [r for r in done if r.get("pair_kind") != "noise"]
    noise = [r for r in done if r.get("pair_kind") == "noise"]
    deltas = values(cands, candidate_delta_ms)
    g: dict[str, Any] = {
        "provider": first.get("provider"), "route": first.get("route"), "kind": kind,
        "primary": first.get("primary_target"), "candidate_target": _other(first.get("primary_target") or ""),
        "pairs": len(rows), "candidates": len(cands), "noise_pairs": len(noise),
        "outcomes": dict(Counter(r.get("outcome") or "?" for r in rows if r.get("pair_kind") != "noise")),
        "noise_outcomes": dict(Counter(r.get("outcome") or "?" for r in rows if r.get("pair_kind") == "noise")),
        "spend": _spend(rows),
        "shared_keys": any("shared_keys" in (r.get("flags") or []) for r in rows),
        "first_output_delta_ms": {**_q(deltas, 0.5, 0.9), "ci": bootstrap_median(deltas)},
        "verdicts": [v.as_dict() for v in verdicts(rows, thresholds)],
        "worst": _worst(rows, kind or ""),
        "daily": _daily(cands),
        "hist": {
            "wer": {"candidate": histogram(values(cands, _wer_of), WER_BINS),
                    "noise": histogram(values(noise, _wer_of), WER_BINS)},
            "first_output_delta_ms": histogram(deltas, DELTA_BINS, open_low=True),
            "duration_ratio": histogram(values(cands, lambda r: r.get("duration_ratio")), RATIO_BINS,
                                        open_low=True),
        },
    }
    if kind == "stt":
        wers = values(cands, _wer_of)
        g["stt"] = {
            "pooled_wer": pooled_wer(cands), "pooled_wer_ci": bootstrap_pooled_wer(cands),
            "noise_pooled_wer": pooled_wer(noise), "noise_pooled_wer_ci": bootstrap_pooled_wer(noise),
            **{f"wer_{k}": v for k, v in _q(wers, 0.5, 0.9).items()},
            "first_final_ms": _leg_values(cands, "first_final_ms"),
            "finalize_ms": _metric_leg(cands, "finalize_ms"),
            "emission_ms": _leg_values(cands, "emission_ms"),
            "turns": {k: sum(int((r.get("metrics") or {}).get(k) or 0) for r in cands)
                      for k in ("eot_matched", "eot_missed", "eot_extra")},
            "eot_delta_ms_p50": median_stat(values(cands, lambda r: (r.get("metrics") or {}).get("eot_delta_ms"))),
        }
    else:
        ratios = values(cands, lambda r: r.get("duration_ratio"))
        g["tts"] = {
            "ttfa_ms": _leg_values(cands, "ttfa_ms"),
            "duration_ratio": _q(ratios, 0.1, 0.5, 0.9),
            "lufs_delta_p50": median_stat(values(cands, lambda r: r.get("lufs_delta"))),
            "silence_ratio": _metric_leg(cands, "silence_ratio"),
            "noise_floor_dbfs": _metric_leg(cands, "noise_floor_dbfs"),
            "format_mismatches": sum(1 for r in cands if r.get("format_match") is False),
            "rt_wer": _leg_values(cands, "rt_wer"),
        }
    return g


def build_report(
    rows: Sequence[Row],
    *,
    since_s: float | None = None,
    now: float | None = None,
    tenant: str | None = None,
    provider: str | None = None,
    route: str | None = None,
    thresholds: dict[str, Threshold] | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    keep = [r for r in rows
            if (since_s is None or (r.get("started_at") or 0) >= now - since_s)
            and (tenant is None or r.get("tenant") == tenant)
            and (provider is None or r.get("provider") == provider)
            and (route is None or r.get("route") == route)]
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in keep:
        groups[(r.get("provider") or "?", r.get("route") or "?", r.get("primary_target") or "?")].append(r)
    return {
        "generated_at": now, "since_s": since_s,
        "filters": {"tenant": tenant, "provider": provider, "route": route},
        "pairs": len(keep),
        "groups": [_group(rs, thresholds) for _, rs in sorted(groups.items())],
    }


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _direction(g: dict[str, Any]) -> str:
    return f"{g['primary']} -> {g['candidate_target']}"


def summary_line(g: dict[str, Any]) -> dict[str, Any]:
    """The flat per-group figures of the table and CSV forms."""
    flagged = [v["metric"] for v in g["verdicts"] if v["flagged"]]
    line = {"provider": g["provider"], "route": g["route"], "direction": _direction(g), "kind": g["kind"],
            "pairs": g["pairs"], "completed": g["outcomes"].get("completed", 0), "noise_pairs": g["noise_pairs"],
            "dropped": sum(n for o, n in g["outcomes"].items() if o != "completed"),
            "delta_p50_ms": g["first_output_delta_ms"]["p50"], "delta_p90_ms": g["first_output_delta_ms"]["p90"]}
    if g["kind"] == "stt":
        s = g["stt"]
        line.update(pooled_wer=s["pooled_wer"], noise_wer=s["noise_pooled_wer"], wer_p50=s["wer_p50"],
                    wer_p90=s["wer_p90"])
    else:
        t = g["tts"]
        line.update(duration_ratio_p50=t["duration_ratio"]["p50"], lufs_delta_p50=t["lufs_delta_p50"],
                    format_mismatches=t["format_mismatches"])
    line["flagged"] = ",".join(flagged) or "ok"
    return line


def render_table(report: dict[str, Any]) -> str:
    out = [f"shadow report: {report['pairs']} pairs in {len(report['groups'])} groups"]
    for g in report["groups"]:
        line = summary_line(g)
        out.append("")
        out.append(f"{g['provider']} {g['route']} ({g['kind']}) {_direction(g)}: {line['flagged'].upper()}")
        out.append("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in line.items()
                                    if k not in ("provider", "route", "direction", "kind", "flagged")))
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(g["outcomes"].items()))
        out.append(f"  outcomes: {outcomes or '-'}")
        for v in g["verdicts"]:
            out.append(f"  verdict {v['metric']:<8} raw={_fmt(v['raw'])} noise={_fmt(v['noise'])} "
                       f"n={v['candidates']}/{v['noise_pairs']} {'FLAGGED' if v['flagged'] else 'ok'}")
        for w in g["worst"][:5]:
            extra = f"  {w['word_diff']}" if w.get("word_diff") else ""
            out.append(f"  worst {w['pair_id']} wer={_fmt(w['wer'])} delta_ms={_fmt(w['first_output_delta_ms'])}"
                       f" ratio={_fmt(w['duration_ratio'])}{extra}")
    return "\n".join(out) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    lines = [summary_line(g) for g in report["groups"]]
    cols = list(dict.fromkeys(k for line in lines for k in line)) or ["provider", "route", "direction", "pairs"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for line in lines:
        w.writerow({k: "" if v is None else v for k, v in line.items()})
    return buf.getvalue()


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        from gateway.traffic.page import render_page

        return render_page(report)
    if fmt == "table":
        return render_table(report)
    raise ValueError(f"unknown format {fmt!r} (one of table, json, csv, html)")
