"""The insights page's charts as server-rendered SVG: stacked bars of counts per bucket, lines of durations.

Pure: figures in, markup out, like charts.py (the incident page's metric charts). Series names come from alert labels
(a severity can be any text), so every text is escaped; numbers are formatted here. Each bar and point carries a
<title> with its figure, and the page puts the same figures in a table, for screen readers and small screens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 8, 8, 22
# Severities the page knows get their own colour; any other shares the last one.
SEVERITY_COLOURS = {
    "critical": "#b42318",
    "error": "#e04f16",
    "warning": "#dc9a03",
    "info": "#2e6fdb",
    "none": "#8a94a6",
}
OTHER_COLOUR = "#667085"


@dataclass(frozen=True)
class Series:
    """One named row of figures, one per bucket; None: no figure for that bucket (drawn as a gap)."""

    name: str
    values: Sequence[float | None]
    colour: str
    dashed: bool = False


def colour_of(severity: str) -> str:
    return SEVERITY_COLOURS.get(severity, OTHER_COLOUR)


def _frame(label: str, top: str, starts: Sequence[datetime], bucket_label: Callable[[datetime], str]) -> list[str]:
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    return [
        Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}" '
            'xmlns="http://www.w3.org/2000/svg">'
        ).format(w=WIDTH, h=HEIGHT, label=label),
        Markup("<title>{}</title>").format(label),
        f'<rect class="plot" x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#8a94a6"/>',
        Markup('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>').format(
            PAD_LEFT - 4, PAD_TOP + 10, top
        ),
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" font-size="11" '
        'fill="currentColor">0</text>',
        Markup('<text x="{}" y="{}" font-size="11" fill="currentColor">{}</text>').format(
            PAD_LEFT, HEIGHT - 6, bucket_label(starts[0])
        ),
        Markup('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>').format(
            WIDTH - PAD_RIGHT, HEIGHT - 6, bucket_label(starts[-1])
        ),
    ]


def stacked_bars(
    label: str,
    starts: Sequence[datetime],
    series: Sequence[Series],
    bucket_label: Callable[[datetime], str],
) -> Markup:
    """A bar per bucket, its series stacked in the order given (the first at the bottom)."""
    if not starts:
        return Markup('<p class="muted">{}: no period</p>').format(label)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(starts))]
    top = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(starts)
    bar_w = max(slot * 0.8, 0.5)
    parts = _frame(label, f"{top:g}", starts, bucket_label)
    for i, start in enumerate(starts):
        y: float = PAD_TOP + plot_h
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        for s in series:
            value = s.values[i] or 0
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.colour}">'
                f"<title>{escape(bucket_label(start))}: {value:g} {escape(s.name)}</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (text parts are escaped above, the rest are numbers)


def lines(
    label: str,
    starts: Sequence[datetime],
    series: Sequence[Series],
    bucket_label: Callable[[datetime], str],
    value_label: Callable[[float], str],
) -> Markup:
    """A line per series across the buckets' middles; a bucket without a figure breaks the line (a lone figure is
    a dot)."""
    if not starts:
        return Markup('<p class="muted">{}: no period</p>').format(label)
    figures = [v for s in series for v in s.values if v is not None]
    if not figures:
        return Markup('<p class="muted">{}: no figures in this period</p>').format(label)
    top = max(figures) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(starts)
    parts = _frame(label, value_label(top), starts, bucket_label)

    def point(i: int, value: float) -> tuple[float, float]:
        return PAD_LEFT + slot * (i + 0.5), PAD_TOP + plot_h * (1 - value / top)

    for s in series:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append(point(i, value))
            x, y = point(i, value)
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{s.colour}">'
                f"<title>{escape(bucket_label(starts[i]))}: {escape(s.name)} {escape(value_label(value))}</title>"
                "</circle>"
            )
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(
                    f'<polyline class="series" points="{points}" fill="none" stroke="{s.colour}" '
                    f'stroke-width="1.5"{dash}/>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (text parts are escaped above, the rest are numbers)
