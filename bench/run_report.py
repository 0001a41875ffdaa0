"""`bench/run.py`'s report: the table printed after a run (direct against gateway per path, mode and
concurrency) and the list of failed sessions that goes with the JSON."""

from __future__ import annotations

from typing import Any

HEADER = (
    "path",
    "mode",
    "conc",
    "metric",
    "direct p50",
    "direct p99",
    "gw p50",
    "gw p99",
    "ratio p50",
    "ratio p99",
    "added p50",
    "added p99",
)


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:.2f}{unit}" if abs(x) < 100 else f"{x:.0f}{unit}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    head = (result["path"], result["mode"], str(result["concurrency"]))
    d, g, c = result["direct"], result["gateway"], result["compare"]
    rows = []
    for key in result["table_metrics"]:
        dm, gm, cm = d.get("metrics", {}).get(key), g.get("metrics", {}).get(key), c.get(key, {})
        rows.append(
            (
                *head,
                key,
                fmt(dm and dm["p50"]),
                fmt(dm and dm["p99"]),
                fmt(gm["p50"]) if gm else "FAILED",
                fmt(gm["p99"]) if gm else "FAILED",
                fmt(cm.get("ratio_p50"), "x"),
                fmt(cm.get("ratio_p99"), "x"),
                fmt(cm.get("added_ms_p50")),
                fmt(cm.get("added_ms_p99")),
            )
        )
    dt, gt = d.get("throughput", {}).get("audio_x_realtime"), g.get("throughput", {}).get("audio_x_realtime")
    rows.append(
        (
            *head,
            "audio xRT (higher=better)",
            fmt(dt),
            "",
            fmt(gt) if gt else "FAILED",
            "",
            fmt(c.get("throughput_ratio"), "x"),
            "",
            "",
            "",
        )
    )
    return rows


def render_table(results: list[dict[str, Any]]) -> str:
    rows = [HEADER] + [row for r in results for row in table_rows(r)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def failures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "path": r["path"],
            "mode": r["mode"],
            "concurrency": r["concurrency"],
            "side": side,
            "measured": r[side]["measured"],
            "sessions_failed": r[side]["sessions_failed"],
            "sessions_ok": r[side]["sessions_ok"],
            "errors": r[side]["errors"],
        }
        for r in results
        for side in ("direct", "gateway")
        if r[side].get("errors")
    ]
