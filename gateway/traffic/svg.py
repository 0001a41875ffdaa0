"""Server-drawn SVG charts for the shadow page: plain strings, no JavaScript, no external assets.

Every mark carries `data-*` attributes with the numbers it was drawn from (series, bin, count, value),
so the page can be checked against the stored rows, and read by people who view the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 420, 200
PAD_L, PAD_R, PAD_T, PAD_B = 48, 14, 24, 40
PLOT_W, PLOT_H = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

CANDIDATE = "#2f6fdf"
NOISE = "#f08a24"
OUTCOME_COLORS = {"completed": "#3a9a4a", "truncated_budget": "#c9b037", "dropped_overflow": "#d9534f",
                  "shadow_error": "#a33", "timeout": "#7d3c98", "vendor_throttled": "#e67e22"}
OTHER_COLOR = "#888"


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _svg(body: list[str], chart: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(chart)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'<title>{escape(title)}</title>'
            f'<text x="{PAD_L}" y="15" class="ct">{escape(title)}</text>' + "".join(body) + "</svg>")


def bin_label(b: dict[str, Any], unit: str = "") -> str:
    lo, hi = b.get("lo"), b.get("hi")
    if lo is None:
        return f"<{_num(hi)}{unit}"
    if hi is None:
        return f"≥{_num(lo)}{unit}"
    return f"{_num(lo)}"


def histogram(chart: str, title: str, series: Sequence[tuple[str, str, Sequence[dict[str, Any]]]],
              unit: str = "") -> str:
    """Bars per bin; several series are overlaid (each a narrower bar) so candidate and noise compare."""
    nbins = len(series[0][2]) if series else 0
    top = max((b["count"] for _, _, bins in series for b in bins), default=0)
    body = [f'<line x1="{PAD_L}" y1="{PAD_T + PLOT_H}" x2="{PAD_L + PLOT_W}" y2="{PAD_T + PLOT_H}" class="ax"/>']
    if not nbins or top == 0:
        body.append(f'<text x="{PAD_L + PLOT_W / 2}" y="{PAD_T + PLOT_H / 2}" class="empty">no data</text>')
        return _svg(body, chart, title)
    slot = PLOT_W / nbins
    body.append(f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" class="yl">{top}</text>')
    for si, (name, color, bins) in enumerate(series):
        bar_w = slot * (0.8 if si == 0 else 0.45)
        for i, b in enumerate(bins):
            h = b["count"] / top * PLOT_H
            x = PAD_L + i * slot + (slot - bar_w) / 2
            y = PAD_T + PLOT_H - h
            body.append(
                f'<rect class="bar" data-series="{escape(name)}" data-bin="{i}" data-count="{b["count"]}" '
                f'x="{_num(x)}" y="{_num(y)}" width="{_num(bar_w)}" height="{_num(h)}" fill="{color}" '
                f'fill-opacity="{0.9 if si == 0 else 0.75}"><title>{escape(name)} {escape(bin_label(b, unit))}: '
                f'{b["count"]}</title></rect>')
    for i, b in enumerate(series[0][2]):
        x = PAD_L + i * slot + slot / 2
        body.append(f'<text x="{_num(x)}" y="{PAD_T + PLOT_H + 14}" class="xl" text-anchor="middle">'
                    f'{escape(bin_label(b, unit))}</text>')
    lx = PAD_L
    for name, color, _ in series if len(series) > 1 else ():
        body.append(f'<rect x="{lx}" y="{HEIGHT - 12}" width="10" height="10" fill="{color}"/>'
                    f'<text x="{lx + 14}" y="{HEIGHT - 3}" class="lg">{escape(name)}</text>')
        lx += 110
    return _svg(body, chart, title)


def outcome_bar(chart: str, title: str, outcomes: dict[str, int]) -> str:
    """One stacked horizontal bar: each outcome's share of the pairs."""
    total = sum(outcomes.values())
    body: list[str] = []
    height = 70
    if not total:
        body.append(f'<text x="{PAD_L}" y="45" class="empty">no pairs</text>')
        return _svg(body, chart, title, height=height)
    x = float(PAD_L)
    lx = PAD_L
    for name, count in sorted(outcomes.items(), key=lambda kv: (kv[0] != "completed", kv[0])):
        w = count / total * PLOT_W
        color = OUTCOME_COLORS.get(name, OTHER_COLOR)
        body.append(f'<rect class="seg" data-outcome="{escape(name)}" data-count="{count}" x="{_num(x)}" y="24" '
                    f'width="{_num(w)}" height="20" fill="{color}"><title>{escape(name)}: {count}</title></rect>')
        body.append(f'<rect x="{lx}" y="52" width="10" height="10" fill="{color}"/>'
                    f'<text x="{lx + 13}" y="61" class="lg">{escape(name)} {count}</text>')
        x += w
        lx += 20 + 7 * (len(name) + len(str(count)) + 1)
    return _svg(body, chart, title, width=max(WIDTH, lx), height=height)


def line_chart(chart: str, title: str, points: Sequence[tuple[str, float | None]], y_fmt: str = "{:.3g}") -> str:
    """Values per day as a polyline with a dot per point; days without a value leave a gap."""
    vals = [v for _, v in points if v is not None]
    body = [f'<line x1="{PAD_L}" y1="{PAD_T + PLOT_H}" x2="{PAD_L + PLOT_W}" y2="{PAD_T + PLOT_H}" class="ax"/>']
    if not vals:
        body.append(f'<text x="{PAD_L + PLOT_W / 2}" y="{PAD_T + PLOT_H / 2}" class="empty">no data</text>')
        return _svg(body, chart, title)
    lo, hi = min(0.0, *vals), max(vals)
    span = (hi - lo) or 1.0
    step = PLOT_W / max(len(points) - 1, 1)
    coords = []
    for i, (label, v) in enumerate(points):
        x = PAD_L + (i * step if len(points) > 1 else PLOT_W / 2)
        if v is None:
            continue
        y = PAD_T + PLOT_H - (v - lo) / span * PLOT_H
        coords.append(f"{_num(x)},{_num(y)}")
        body.append(f'<circle class="pt" data-day="{escape(label)}" data-value="{v!r}" cx="{_num(x)}" '
                    f'cy="{_num(y)}" r="3.5"><title>{escape(label)}: {escape(y_fmt.format(v))}</title></circle>')
    body.insert(1, f'<polyline points="{" ".join(coords)}" fill="none" stroke="{CANDIDATE}" stroke-width="2"/>')
    body.append(f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" class="yl">{escape(y_fmt.format(hi))}</text>')
    body.append(f'<text x="{PAD_L - 4}" y="{PAD_T + PLOT_H}" class="yl">{escape(y_fmt.format(lo))}</text>')
    for i in sorted({0, len(points) - 1}):
        x = PAD_L + (i * step if len(points) > 1 else PLOT_W / 2)
        anchor = "middle" if len(points) == 1 else "start" if i == 0 else "end"
        body.append(f'<text x="{_num(x)}" y="{PAD_T + PLOT_H + 14}" class="xl" text-anchor="{anchor}">'
                    f'{escape(points[i][0][5:])}</text>')
    return _svg(body, chart, title)
