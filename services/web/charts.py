"""Metric charts as server-rendered SVG: a line per series, alert starts and other events as vertical markers.

Pure: points in, markup out. Every text that reaches the SVG (series name, query, unit, labels) is
escaped; numbers are formatted by us. No inline styles, so the page's CSP can forbid them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 160
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 56, 8, 8, 22
MAX_MARKERS = 200


def _fmt(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.3g}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def _hhmm(at: datetime) -> str:
    return at.strftime("%H:%M")


# Each kind of mark its own colour and dash, so they can be told apart without the legend's help too.
MARK_STYLES = {
    "metric-peak": 'stroke="#7a3cc4" stroke-width="1.5"',
    "log-burst": 'stroke="#e08a00" stroke-width="1.5" stroke-dasharray="1 3"',
    "silence": 'stroke="#475467" stroke-width="1.5" stroke-dasharray="8 3"',
}
MAX_EVENT_MARKS = 50


@dataclass(frozen=True)
class ChartEvent:
    """A mark other than an alert start: the series' own peak, a log burst, a silence. `label` is untrusted text."""

    at: datetime
    kind: Literal["metric-peak", "log-burst", "silence"]
    label: str


def markers_within(markers: Sequence[datetime], start: datetime, end: datetime) -> list[datetime]:
    """The markers (sorted, distinct) in [start, end], at most MAX_MARKERS of them, cut by bisection: an
    incident of 10,000 alerts has 10,000 starts to consider for each chart."""
    inside = markers[bisect_left(markers, start) : bisect_right(markers, end)]
    if len(inside) > MAX_MARKERS:
        # Thousands of alerts would paint the chart red; evenly spaced samples keep where they cluster.
        step = len(inside) / MAX_MARKERS
        inside = [inside[int(i * step)] for i in range(MAX_MARKERS)]
    return list(inside)


def render_chart(
    title: str,
    points: Sequence[tuple[datetime, float]],
    markers: Sequence[datetime],
    *,
    unit: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    events: Sequence[ChartEvent] = (),
    band: Sequence[tuple[datetime, float, float]] = (),
) -> Markup:
    """One series as an SVG; `markers` (alert starts, sorted and distinct) in the time range are red lines, `events`
    (at most MAX_EVENT_MARKS, the earliest) lines of their kind's style with their label as a tooltip."""
    label = f"{title} ({unit})" if unit else title
    if not points:
        return Markup('<p class="muted">{}: no data points</p>').format(label)
    t0 = start or points[0][0]
    t1 = end or points[-1][0]
    if t1 <= t0:
        t1 = t0 + timedelta(minutes=1)
    span = max((t1 - t0).total_seconds(), 1.0)
    # `band`: each point's step's lowest and highest sample, drawn behind the line so a spike shorter than a step shows.
    values = [v for _, v in points] + [v for _, low, high in band for v in (low, high)]
    lo, hi = min(values), max(values)
    if hi == lo:
        hi, lo = hi + 1, lo - 1
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(at: datetime) -> float:
        return PAD_LEFT + plot_w * ((at - t0).total_seconds() / span)

    def y(value: float) -> float:
        return PAD_TOP + plot_h * (1 - (value - lo) / (hi - lo))

    path = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in points if t0 <= at <= t1)
    marks = markers_within(markers, t0, t1)
    parts: list[str] = [
        Markup(
            '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}" '
            'xmlns="http://www.w3.org/2000/svg">'
        ).format(w=WIDTH, h=HEIGHT, label=label),
        Markup("<title>{}</title>").format(label),
        Markup('<rect class="plot" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#8a94a6"/>').format(
            PAD_LEFT, PAD_TOP, plot_w, plot_h
        ),
        Markup('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>').format(
            PAD_LEFT - 4, PAD_TOP + 10, _fmt(hi)
        ),
        Markup('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>').format(
            PAD_LEFT - 4, PAD_TOP + plot_h, _fmt(lo)
        ),
        Markup('<text x="{}" y="{}" font-size="11" fill="currentColor">{} UTC</text>').format(
            PAD_LEFT, HEIGHT - 6, _hhmm(t0)
        ),
        Markup('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{} UTC</text>').format(
            WIDTH - PAD_RIGHT, HEIGHT - 6, _hhmm(t1)
        ),
    ]
    # Numbers only from here on: plain f-strings (thousands of Markup.format calls were most of the page's time).
    for mark in marks:
        at = mark.strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(
            f'<line class="alert-start" x1="{x(mark):.1f}" x2="{x(mark):.1f}" y1="{PAD_TOP}" y2="{PAD_TOP + plot_h}" '
            f'stroke="#d92d20" stroke-width="1.5" stroke-dasharray="4 3"><title>alert started {at}</title></line>'
        )
    shown = sorted((e for e in events if t0 <= e.at <= t1), key=lambda e: e.at)[:MAX_EVENT_MARKS]
    for event in shown:
        at = event.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(
            f'<line class="{event.kind}" x1="{x(event.at):.1f}" x2="{x(event.at):.1f}" y1="{PAD_TOP}" '
            f'y2="{PAD_TOP + plot_h}" {MARK_STYLES[event.kind]}><title>{escape(event.label)} ({at})</title></line>'
        )
    inside = [b for b in band if t0 <= b[0] <= t1]
    if inside:
        outline = [f"{x(at):.1f},{y(high):.1f}" for at, _, high in inside]
        outline += [f"{x(at):.1f},{y(low):.1f}" for at, low, _ in reversed(inside)]
        # The stroke keeps a one-step spike visible where the filled area would be a hairline.
        parts.append(
            f'<polygon class="series-band" points="{" ".join(outline)}" fill="#2e6fdb" fill-opacity="0.2" '
            'stroke="#2e6fdb" stroke-opacity="0.45" stroke-width="1"/>'
        )
    if path:
        parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="#2e6fdb" stroke-width="1.5"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (text parts are escaped above, the rest are numbers)
