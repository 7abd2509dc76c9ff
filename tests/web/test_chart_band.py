"""The metric chart draws each point's step extremes behind the line: a spike shorter than a step shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from services.web.charts import PAD_TOP, render_chart

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def test_a_spike_between_two_steps_reaches_the_top_of_the_chart() -> None:
    points = [(T0 + timedelta(seconds=30 * i), 30.0) for i in range(10)]
    band = [(at, 28.0, 95.0 if i == 4 else 32.0) for i, (at, _) in enumerate(points)]
    svg = str(render_chart("cpu", points, [], unit="%", band=band))
    polygon = re.search(r'<polygon class="series-band" points="([^"]+)"', svg)
    assert polygon is not None
    ys = [float(p.split(",")[1]) for p in polygon.group(1).split()]
    assert min(ys) == PAD_TOP  # the spike is the chart's top
    assert ">95<" in svg  # and the axis says how high
    assert svg.index("series-band") < svg.index('class="series"')  # behind the line


def test_without_a_band_the_chart_is_as_before() -> None:
    points = [(T0 + timedelta(seconds=30 * i), float(i)) for i in range(5)]
    assert render_chart("cpu", points, []) == render_chart("cpu", points, [], band=[])
    assert "series-band" not in str(render_chart("cpu", points, []))
