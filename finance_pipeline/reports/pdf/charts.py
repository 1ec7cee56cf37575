"""Vector charts of the close pack as small hand-built SVGs (deterministic, no ids, no dates),
so the PDF prints sharp and re-renders byte-identically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

W, H = 720.0, 250.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 14.0, 14.0, 40.0
FONT = 'font-family="DejaVu Sans" font-size="10"'
INK, GRID, MUTED = "#1b2733", "#d9dee4", "#5b6770"
UP, DOWN, TOTAL, FX = "#2a7f62", "#b23a32", "#1f3a5f", "#8a939b"
PALETTE = ("#1f3a5f", "#2a7f62", "#d08c25", "#6f4e9c", "#3f8fb4", "#b23a32", "#8a939b", "#b5a642")


def _num(x: float) -> str:
    """A coordinate with two decimals: stable text, small files."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def nice_ticks(lo: float, hi: float, count: int = 5, zero: bool = True) -> list[float]:
    """Round axis ticks (1, 2, 2.5, 5 x 10^k) covering [lo, hi], zero included unless `zero`
    is False (a waterfall reads better on an axis cut near its lowest level)."""
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        hi = lo + 1
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def compact(value: float) -> str:
    """An axis label: 1,250,000 -> 1.25M, 12,500 -> 12.5k, 0 -> 0."""
    a = abs(value)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            text = f"{value / div:.2f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


class _Frame:
    """Plot area and y scale shared by the chart kinds."""

    def __init__(
        self, lo: float, hi: float, width: float = W, height: float = H, zero: bool = True
    ) -> None:
        self.w, self.h = width, height
        self.ticks = nice_ticks(lo, hi, zero=zero)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.x0, self.x1 = LEFT, width - RIGHT
        self.y0, self.y1 = height - BOTTOM, TOP

    def y(self, v: float) -> float:
        return self.y0 - (v - self.lo) / (self.hi - self.lo) * (self.y0 - self.y1)

    def open(self, title: str) -> list[str]:
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_num(self.w)} {_num(self.h)}"'
            f' width="100%" role="img" aria-label="{escape(title)}">'
        ]
        for t in self.ticks:
            y = _num(self.y(t))
            color = MUTED if t == 0 else GRID
            out.append(
                f'<line x1="{_num(self.x0)}" y1="{y}" x2="{_num(self.x1)}" y2="{y}"'
                f' stroke="{color}" stroke-width="{1 if t == 0 else 0.6}"/>'
            )
            out.append(
                f'<text x="{_num(self.x0 - 6)}" y="{_num(self.y(t) + 3.5)}" text-anchor="end"'
                f' fill="{MUTED}" {FONT}>{escape(compact(t))}</text>'
            )
        return out


def _legend(items: Sequence[tuple[str, str]], y: float, width: float = W) -> list[str]:
    """A one-line legend centred under the plot."""
    widths = [22 + 6.2 * len(label) for label, _c in items]
    x = (width - sum(widths)) / 2
    out = []
    for (label, color), w in zip(items, widths, strict=True):
        out.append(f'<rect x="{_num(x)}" y="{_num(y - 8)}" width="10" height="10" fill="{color}"/>')
        out.append(
            f'<text x="{_num(x + 14)}" y="{_num(y + 1)}" fill="{INK}" {FONT}>{escape(label)}</text>'
        )
        x += w
    return out


def waterfall_svg(steps: Sequence[tuple[str, float, str]]) -> str:
    """Roll-forward waterfall: steps are (label, value, kind) with kind balance | move."""
    level, bars = 0.0, []
    for label, value, kind in steps:
        if kind == "balance":
            bars.append((label, 0.0, value, TOTAL, value))
            level = value
        else:
            bars.append((label, level, level + value, UP if value >= 0 else DOWN, value))
            level += value
    levels = [v for _l, a, b, _c, _v in bars for v in (a, b) if _c != TOTAL or v]
    lo, hi = min(levels), max(levels)
    span = (hi - lo) or abs(hi) or 1.0
    # Cut the axis below the lowest level so a month's movements are visible next to balances;
    # balance bars then start at the cut, which the axis labels make explicit.
    cut = lo - span * 0.8 if lo > 0 else lo
    f = _Frame(max(cut, 0.0) if lo > 0 else cut, hi + span * 0.15, zero=lo <= 0)
    bars = [(lbl, f.lo if c == TOTAL and a == 0.0 else a, b, c, v) for lbl, a, b, c, v in bars]
    out = f.open("MRR roll-forward waterfall")
    slot = (f.x1 - f.x0) / len(bars)
    bw = slot * 0.58
    prev_top = None
    for i, (label, a, b, color, value) in enumerate(bars):
        x = f.x0 + i * slot + (slot - bw) / 2
        top, bottom = f.y(max(a, b)), f.y(min(a, b))
        out.append(
            f'<rect x="{_num(x)}" y="{_num(top)}" width="{_num(bw)}"'
            f' height="{_num(max(bottom - top, 0.8))}" fill="{color}"/>'
        )
        if prev_top is not None:  # connector from the previous bar's end level
            out.append(
                f'<line x1="{_num(x - (slot - bw))}" y1="{_num(prev_top)}" x2="{_num(x)}"'
                f' y2="{_num(prev_top)}" stroke="{MUTED}" stroke-width="0.6" stroke-dasharray="2 2"/>'
            )
        prev_top = f.y(b)
        cx = x + bw / 2
        sign = "+" if value > 0 and color != TOTAL else ""
        ly = top - 4 if value >= 0 or color == TOTAL else bottom + 11
        out.append(
            f'<text x="{_num(cx)}" y="{_num(ly)}" text-anchor="middle" fill="{INK}" {FONT}>'
            f"{escape(sign + compact(value))}</text>"
        )
        out.append(
            f'<text x="{_num(cx)}" y="{_num(f.y0 + 15)}" text-anchor="middle" fill="{INK}"'
            f" {FONT}>{escape(label)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def stacked_bars_svg(months: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Stacked monthly bars (MRR by plan); series are (name, value per month), non-negative."""
    totals = [sum(max(s[1][i], 0.0) for s in series) for i in range(len(months))]
    f = _Frame(0.0, max(totals, default=0.0) or 1.0)
    out = f.open("MRR by plan")
    slot = (f.x1 - f.x0) / max(len(months), 1)
    bw = slot * 0.66
    for i, month in enumerate(months):
        x = f.x0 + i * slot + (slot - bw) / 2
        base = 0.0
        for j, (_name, values) in enumerate(series):
            v = max(values[i], 0.0)
            if v <= 0:
                continue
            top, bottom = f.y(base + v), f.y(base)
            out.append(
                f'<rect x="{_num(x)}" y="{_num(top)}" width="{_num(bw)}"'
                f' height="{_num(bottom - top)}" fill="{PALETTE[j % len(PALETTE)]}"/>'
            )
            base += v
        out.append(
            f'<text x="{_num(x + bw / 2)}" y="{_num(f.y0 + 13)}" text-anchor="middle"'
            f' fill="{INK}" {FONT}>{escape(month)}</text>'
        )
    out += _legend(
        [(name, PALETTE[j % len(PALETTE)]) for j, (name, _v) in enumerate(series)], H - 8
    )
    out.append("</svg>")
    return "".join(out)


def bars_and_line_svg(
    months: Sequence[str], revenue: Sequence[float], expenses: Sequence[float], net: Sequence[float]
) -> str:
    """Revenue and expenses as paired bars per month, net as a line with markers."""
    lo = min([*net, 0.0])
    hi = max([*revenue, *expenses, *net, 0.0])
    f = _Frame(lo, hi or 1.0)
    out = f.open("Revenue, expenses and net by month")
    slot = (f.x1 - f.x0) / max(len(months), 1)
    bw = slot * 0.34
    points = []
    for i, month in enumerate(months):
        x = f.x0 + i * slot + slot / 2
        for dx, v, color in ((-bw, revenue[i], TOTAL), (0.0, expenses[i], FX)):
            top, bottom = f.y(max(v, 0.0)), f.y(min(v, 0.0))
            out.append(
                f'<rect x="{_num(x + dx)}" y="{_num(top)}" width="{_num(bw)}"'
                f' height="{_num(bottom - top)}" fill="{color}"/>'
            )
        points.append((x, f.y(net[i])))
        out.append(
            f'<text x="{_num(x)}" y="{_num(f.y0 + 13)}" text-anchor="middle" fill="{INK}"'
            f" {FONT}>{escape(month)}</text>"
        )
    path = " ".join(f"{_num(x)},{_num(y)}" for x, y in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[2]}" stroke-width="1.8"/>')
    for x, y in points:
        out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.6" fill="{PALETTE[2]}"/>')
    out += _legend([("Revenue", TOTAL), ("Expenses", FX), ("Net", PALETTE[2])], H - 8)
    out.append("</svg>")
    return "".join(out)


def lines_svg(
    months: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], title: str
) -> str:
    """One line per series (name, values, colour) over the months, e.g. forecast variants."""
    values = [v for _n, vs, _c in series for v in vs]
    f = _Frame(min([*values, 0.0]), max([*values, 0.0]) or 1.0)
    out = f.open(title)
    slot = (f.x1 - f.x0) / max(len(months), 1)
    for i, month in enumerate(months):
        out.append(
            f'<text x="{_num(f.x0 + i * slot + slot / 2)}" y="{_num(f.y0 + 13)}"'
            f' text-anchor="middle" fill="{INK}" {FONT}>{escape(month)}</text>'
        )
    for _name, vs, color in series:
        pts = " ".join(
            f"{_num(f.x0 + i * slot + slot / 2)},{_num(f.y(v))}" for i, v in enumerate(vs)
        )
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    out += _legend([(n, c) for n, _v, c in series], H - 8)
    out.append("</svg>")
    return "".join(out)
