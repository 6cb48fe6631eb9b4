"""Stacked bar charts of the compliance statistics as SVG made on the device (F29): no chart
library, no CDN, nothing to license, and the page works without JavaScript.

One bar per bucket, stacked masked / incorrect / unmasked / undecided from the bottom (static
faces are not people and stay out of the bars), with the compliance percentage as a line on
its own 0-100 % scale. The drawing has a fixed ``viewBox`` and scales to the width of the
page, so it reads on a phone; every bar carries a ``<title>`` with its exact numbers (a tap or
a hover shows it). Colours come from the page's stylesheet through class names, so the chart
follows the light and dark themes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from maskwatch.events import StatsBucket

# Phone first: 360 units across fill a phone's card at about 1 CSS px per unit, so the 12-unit
# labels read at 11-12 px there and larger on a desktop.
WIDTH, HEIGHT = 360.0, 210.0
LEFT, RIGHT, TOP, BOTTOM = 34.0, 42.0, 12.0, 26.0
STACK = ("masked", "incorrect", "unmasked", "undecided")
GRID_LINES = 4


def _nice_top(value: int) -> int:
    """The smallest ``GRID_LINES`` × (1, 2 or 5 × 10^n) that is at least ``value``, so every
    grid line falls on a whole, round number."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if GRID_LINES * step * factor >= value:
                return GRID_LINES * step * factor
        step *= 10


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def stacked_bars_svg(
    buckets: Sequence[StatsBucket], label: Callable[[StatsBucket], str], label_every: int,
    title: str, kind: str,
) -> str:
    """The chart of ``buckets``; ``label`` names a bucket under its bar (every
    ``label_every``-th bar, so labels never overlap), ``title`` is the accessible name and
    ``kind`` ("hour" or "day") becomes the ``data-bucket`` attribute."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(buckets), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.72, 1.0)
    top = _nice_top(max((sum(b.counts[s] for s in STACK) for b in buckets), default=0))
    scale = plot_h / top
    base = TOP + plot_h
    parts = [
        (f'<svg class="chart" data-bucket="{kind}" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" '
         f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'),
        f"<title>{escape(title)}</title>",
    ]
    for i in range(GRID_LINES + 1):
        y = base - plot_h * i / GRID_LINES
        parts.append(f'<line class="gridline" x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4:g}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{top * i // GRID_LINES}</text>')
        parts.append(f'<text class="axis pct" x="{WIDTH - RIGHT + 4:g}" y="{y + 4:.1f}">'
                     f"{100 * i // GRID_LINES}%</text>")
    points = []
    for i, bucket in enumerate(buckets):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = base
        counts = bucket.counts
        pct = bucket.compliance
        tip = (f"{label(bucket)}: {counts['masked']} masked, {counts['unmasked']} unmasked, "
               f"{counts['incorrect']} incorrect, {counts['undecided']} undecided"
               + (f"; compliance {_fmt(pct)} %" if pct is not None else "")
               + (" (demo data)" if bucket.demo else ""))
        parts.append(f'<g class="slot{" demo" if bucket.demo else ""}"><title>{escape(tip)}'
                     "</title>")
        for state in STACK:
            h = counts[state] * scale
            if h > 0:
                y -= h
                parts.append(f'<rect class="bar {state}" x="{x:.1f}" y="{y:.1f}" '
                             f'width="{bar_w:.1f}" height="{h:.1f}"/>')
        parts.append("</g>")
        if i % label_every == 0:
            parts.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8:g}" '
                         f'text-anchor="middle">{escape(label(bucket))}</text>')
        if pct is not None:
            points.append((x + bar_w / 2, base - plot_h * pct / 100))
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="compliance" points="{path}"/>')
    parts += [f'<circle class="compliance" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>'
              for x, y in points]
    parts.append("</svg>")
    return "".join(parts)
