"""Small inline SVG charts for report.html: no plotting library, no script, no network; the
numbers a chart shows are also in the report's tables and the manifest."""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
VERDICT_COLOUR = {"pass": "#2e7d32", "warn": "#f9a825", "fail": "#c62828", "unverified": "#8e24aa"}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}"


def scatter(points: list[dict], x_label: str, y_label: str, log_x: bool = False, width: int = 460,
            height: int = 300, title: str = "") -> str:
    """points: {x, y, label, colour}; one dot and a label each."""
    points = [p for p in points if p["x"] is not None and p["y"] is not None and (not log_x or p["x"] > 0)]
    left, right, top, bottom = 56, 16, 28, 44
    pw, ph = width - left - right, height - top - bottom
    out = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title or y_label)}</title>',
           f'<text x="{left}" y="16" class="ct">{escape(title)}</text>']
    if not points:
        out.append(f'<text x="{left}" y="{top + ph / 2}">nothing to plot</text></svg>')
        return "".join(out)
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(p["x"]) for p in points], [p["y"] for p in points]
    x0, x1 = min(xs), max(xs)
    pad = (x1 - x0) * 0.08 or 0.5
    x0, x1 = x0 - pad, x1 + pad
    y0, y1 = min(ys), max(ys)
    ypad = (y1 - y0) * 0.1 or max(abs(y1) * 0.05, 0.01)
    y0, y1 = y0 - ypad, y1 + ypad

    def px(v):
        return left + (v - x0) / (x1 - x0) * pw

    def py(v):
        return top + ph - (v - y0) / (y1 - y0) * ph
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    # A log axis gets its ticks at 1, 2 and 5 times each power of ten in range.
    x_ticks = ([math.log10(m * 10 ** e) for e in range(math.floor(x0), math.ceil(x1) + 1) for m in (1, 2, 5)
                if x0 <= math.log10(m * 10 ** e) <= x1] if log_x else _ticks(x0, x1))
    for t in x_ticks:
        label = f"{10 ** t:.3g}" if log_x else _fmt(t)
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle" class="tick">{label}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
               f'<text x="12" y="{top + ph / 2}" transform="rotate(-90 12 {top + ph / 2})" text-anchor="middle">'
               f'{escape(y_label)}</text>')
    for p, x, y in zip(points, xs, ys):
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="{p.get("colour", PALETTE[0])}">'
                   f'<title>{escape(p["label"])}: {_fmt(p["x"])}, {_fmt(p["y"])}</title></circle>'
                   f'<text x="{px(x) + 7:.1f}" y="{py(y) - 6:.1f}" class="pl">{escape(p["label"])}</text>')
    out.append("</svg>")
    return "".join(out)


def bars(groups: list[str], series: list[tuple[str, list[float | None]]], y_label: str, width: int = 460,
         height: int = 220, title: str = "", y_max: float | None = None, log_y: bool = False) -> str:
    """Grouped bars: one group per name in `groups`, one bar per series in each; a legend."""
    left, right, top, bottom = 56, 16, 40, 52
    pw, ph = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    top_value = y_max if y_max is not None else (max(values) if values else 1.0) or 1.0
    scale = (lambda v: math.log10(1 + v) / math.log10(1 + top_value)) if log_y else (lambda v: v / top_value)
    out = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title or y_label)}</title>',
           f'<text x="{left}" y="16" class="ct">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
    for i, (name, _) in enumerate(series):
        out.append(f'<rect x="{left + i * 120}" y="22" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{left + 14 + i * 120}" y="31" class="tick">{escape(name)}</text>')
    ticks = [0, top_value / 2, top_value] if not log_y else [0, top_value]
    for t in ticks:
        y = top + ph - scale(t) * ph
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(round(t, 3))}</text>')
    out.append(f'<text x="12" y="{top + ph / 2}" transform="rotate(-90 12 {top + ph / 2})" text-anchor="middle">'
               f'{escape(y_label)}</text>')
    group_w = pw / max(1, len(groups))
    bar_w = max(1.0, group_w * 0.8 / max(1, len(series)))
    for g, name in enumerate(groups):
        gx = left + g * group_w + group_w * 0.1
        for s, (sname, vs) in enumerate(series):
            v = vs[g]
            if v is None:
                continue
            h = max(0.0, min(1.0, scale(v))) * ph
            out.append(f'<rect x="{gx + s * bar_w:.1f}" y="{top + ph - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} {escape(sname)}: {v:g}</title></rect>')
        if len(groups) <= 24:
            cx = gx + group_w * 0.4
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 12}" text-anchor="end" class="tick" '
                       f'transform="rotate(-35 {cx:.1f} {top + ph + 12})">{escape(name[:14])}</text>')
    out.append("</svg>")
    return "".join(out)
