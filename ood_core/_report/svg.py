"""Histograms as inline SVG text: no plotting library, nothing fetched, every label escaped."""
from __future__ import annotations

from html import escape

import numpy as np

# Colours of the series, in order (fit, query); the threshold line's.
SERIES_COLOURS = ("#8c8c8c", "#1f77b4")
THRESHOLD_COLOUR = "#d62728"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def histogram_svg(series: dict[str, np.ndarray], threshold: float | None = None, *, bins: int = 40,
                  width: int = 560, height: int = 200, label: str = "score") -> str:
    """An SVG histogram of each of ``series`` (name -> values; NaN left out) on shared bins, drawn over
    each other (the first in grey, the second in blue), with a red line at ``threshold`` (None or NaN:
    no line), x ticks, the highest count, and a legend. Returns the ``<svg>`` element's text."""
    clean = {name: np.asarray(v, dtype=np.float64)[np.isfinite(np.asarray(v, dtype=np.float64))]
             for name, v in series.items()}
    values = np.concatenate(list(clean.values())) if clean else np.zeros(0)
    has_line = threshold is not None and np.isfinite(threshold)
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if has_line:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi - lo < 1e-9:  # every value the same: a bin around it
        lo, hi = lo - 0.5e-3, hi + 0.5e-3
    edges = np.linspace(lo, hi, bins + 1)
    counts = {name: np.histogram(v, bins=edges)[0] for name, v in clean.items()}
    top = max([int(c.max()) for c in counts.values() if len(c)] + [1])
    left, right, upper, lower = 44, 24, 22, 34  # right: half of the last tick label ("0.000623")
    plot_w, plot_h = width - left - right, height - upper - lower

    def x_of(value: float) -> float:
        return left + (value - lo) / (hi - lo) * plot_w

    parts = [f'<svg width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)} histogram">',
             f'<rect x="{left}" y="{upper}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ddd"/>']
    bar_w = plot_w / bins
    for (name, c), colour in zip(counts.items(), SERIES_COLOURS * 4):
        for b, count in enumerate(c):
            if count:
                h = count / top * plot_h
                parts.append(f'<rect x="{left + b * bar_w:.2f}" y="{upper + plot_h - h:.2f}" width="{bar_w:.2f}" '
                             f'height="{h:.2f}" fill="{colour}" fill-opacity="0.6"><title>{escape(name)}: {count} '
                             f'in [{_fmt(edges[b])}, {_fmt(edges[b + 1])})</title></rect>')
    for tick in np.linspace(lo, hi, 5):
        x = x_of(tick)
        parts.append(f'<line x1="{x:.2f}" y1="{upper + plot_h}" x2="{x:.2f}" y2="{upper + plot_h + 4}" stroke="#555"/>'
                     f'<text x="{x:.2f}" y="{upper + plot_h + 16}" font-size="11" text-anchor="middle">{_fmt(tick)}</text>')
    parts.append(f'<text x="{left - 4}" y="{upper + 10}" font-size="11" text-anchor="end">{top}</text>'
                 f'<text x="{left - 4}" y="{upper + plot_h}" font-size="11" text-anchor="end">0</text>'
                 f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" font-size="11" text-anchor="middle">'
                 f'{escape(label)} (lower = more severe)</text>')
    if has_line:
        x = x_of(threshold)
        parts.append(f'<line x1="{x:.2f}" y1="{upper - 4}" x2="{x:.2f}" y2="{upper + plot_h}" stroke="{THRESHOLD_COLOUR}" '
                     f'stroke-width="2"/><text x="{x + 3:.2f}" y="{upper - 8}" font-size="11" fill="{THRESHOLD_COLOUR}">'
                     f'threshold {_fmt(threshold)}</text>')
    legend_x = left + plot_w
    for name, colour in zip(counts, SERIES_COLOURS * 4):  # right to left along the top
        text = f"{name} ({len(clean[name])})"
        legend_x -= 7 * len(text) + 22
        parts.append(f'<rect x="{legend_x:.0f}" y="3" width="10" height="10" fill="{colour}" fill-opacity="0.6"/>'
                     f'<text x="{legend_x + 13:.0f}" y="12" font-size="11">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)
