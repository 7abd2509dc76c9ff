"""Summaries of one metric series over the incident window (polars): min/avg/max/p95, the peak and when it
happened, the baseline before the first alert, when the series left it, and a downsampled copy to store."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from services.enricher.window import EARLIEST, LATEST

MIN_BASELINE_POINTS = 3
# A series deviates when it is further from its baseline than the larger of: this many (robust) standard deviations
# of the baseline, this fraction of the baseline, or the absolute floor (a flat 0 series moving to 0.001 is news).
DEVIATION_SIGMAS = 3.0
DEVIATION_FRACTION = 0.1
DEVIATION_FLOOR = 1e-9
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Summary:
    min: float | None = None
    avg: float | None = None
    max: float | None = None
    p95: float | None = None
    peak: float | None = None
    peak_at: datetime | None = None
    baseline: float | None = None
    deviation_at: datetime | None = None
    points: list[tuple[datetime, float]] = field(default_factory=list)


def to_time(epoch_s: float) -> datetime:
    """A time from an answer; one outside datetime's range (or NaN) lands at its nearer end instead of raising."""
    try:
        return datetime.fromtimestamp(epoch_s, UTC)
    except (OverflowError, ValueError, OSError):
        return LATEST if epoch_s > 0 else EARLIEST


def summarise(points: Sequence[tuple[float, float]], *, alert_at: datetime, keep_points: int) -> Summary:
    """`points` are (unix seconds, value) in any order; non-finite values (NaN, ±Inf) are left out."""
    finite = [(t, v) for t, v in points if math.isfinite(v)]
    if not finite:
        return Summary()
    df = pl.DataFrame(finite, schema={"t": pl.Float64, "v": pl.Float64}, orient="row").sort("t")
    stats = df.select(
        min=pl.col("v").min(),
        avg=pl.col("v").mean(),
        max=pl.col("v").max(),
        p95=pl.col("v").quantile(0.95, interpolation="linear"),
        peak_t=pl.col("t").filter(pl.col("v") == pl.col("v").max()).min(),
    ).row(0, named=True)

    alert_t = alert_at.timestamp()
    before = df.filter(pl.col("t") < alert_t)["v"]
    baseline: float | None = None
    deviation_at: datetime | None = None
    if before.len() >= MIN_BASELINE_POINTS:
        baseline = float(before.median())  # type: ignore[arg-type]
        # Median absolute deviation, scaled to a standard deviation: a ramp just before the alert does not
        # inflate it the way it would inflate the plain standard deviation.
        spread = MAD_TO_SIGMA * float((before - baseline).abs().median())  # type: ignore[arg-type]
        threshold = max(DEVIATION_SIGMAS * spread, DEVIATION_FRACTION * abs(baseline), DEVIATION_FLOOR)
        deviation_at = _deviation_start(df, baseline, threshold)

    return Summary(
        min=stats["min"],
        avg=stats["avg"],
        max=stats["max"],
        p95=stats["p95"],
        peak=stats["max"],
        peak_at=to_time(stats["peak_t"]),
        baseline=baseline,
        deviation_at=deviation_at,
        points=downsample(df, keep_points),
    )


def _deviation_start(df: pl.DataFrame, baseline: float, threshold: float) -> datetime | None:
    """Start of the run of deviating points that holds the largest deviation: where the excursion began."""
    dev = df.with_columns(d=(pl.col("v") - baseline).abs()).with_columns(out=pl.col("d") > threshold)
    worst = dev["d"].arg_max()
    if worst is None or not dev["out"][worst]:
        return None
    outside = dev["out"].to_list()
    start = worst
    while start > 0 and outside[start - 1]:
        start -= 1
    return to_time(dev["t"][start])


def downsample(df: pl.DataFrame, keep_points: int) -> list[tuple[datetime, float]]:
    """At most `keep_points` points: per bucket the lowest and the highest, so peaks and dips survive."""
    if df.height <= keep_points:
        rows = df.rows()
    else:
        buckets = max(keep_points // 2, 1)
        indexed = df.with_row_index("i").with_columns(b=(pl.col("i") * buckets // df.height))
        picks = indexed.group_by("b").agg(
            lo=pl.col("i").get(pl.col("v").arg_min()), hi=pl.col("i").get(pl.col("v").arg_max())
        )
        keep = set(picks["lo"].to_list()) | set(picks["hi"].to_list())
        rows = indexed.filter(pl.col("i").is_in(sorted(keep))).select("t", "v").rows()
    return [(to_time(t), v) for t, v in rows]
