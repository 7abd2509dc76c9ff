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
class Extremes:
    """What *_over_time saw of one series: per step (unix seconds, lowest/highest sample since the previous step)
    and over the whole window. Absent parts (a failed query) are empty or None."""

    step_min: Sequence[tuple[float, float]] = ()
    step_max: Sequence[tuple[float, float]] = ()
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    at: float | None = None  # the window's end, where the window's min/max/avg were evaluated


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
    # Per kept point, when extremes were given: its time and its step's lowest and highest sample.
    bands: list[tuple[datetime, float, float]] = field(default_factory=list)


def to_time(epoch_s: float) -> datetime:
    """A time from an answer; one outside datetime's range (or NaN) lands at its nearer end instead of raising."""
    try:
        return datetime.fromtimestamp(epoch_s, UTC)
    except (OverflowError, ValueError, OSError):
        return LATEST if epoch_s > 0 else EARLIEST


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _frame(points: Sequence[tuple[float, float]], column: str) -> pl.DataFrame:
    finite = [(t, v) for t, v in points if math.isfinite(v)]
    return pl.DataFrame(finite, schema={"t": pl.Float64, column: pl.Float64}, orient="row")


def summarise(
    points: Sequence[tuple[float, float]], *, alert_at: datetime, keep_points: int, extremes: Extremes | None = None
) -> Summary:
    """`points` are (unix seconds, value) in any order; non-finite values (NaN, ±Inf) are left out.

    Without `extremes`, min/avg/max and the peak are those of the step values: a spike between two steps is missed.
    With them, min and max (and the peak) are the most extreme of the step values, the per-step extremes and the
    window's; avg is the window's (every sample counts, not one per step). p95, the baseline and the deviation stay
    those of the step values: they describe the typical level, which one sample per step shows well enough.
    """
    values = _frame(points, "v")
    if values.is_empty():
        return Summary()
    df = values.sort("t")
    if extremes is not None:
        # Outer join: a step whose value was out of the lookback (a gap) still shows what its samples reached.
        df = (
            df.join(_frame(extremes.step_min, "lo"), on="t", how="full", coalesce=True)
            .join(_frame(extremes.step_max, "hi"), on="t", how="full", coalesce=True)
            .with_columns(v=pl.coalesce("v", "hi", "lo"))
            .sort("t")
        )
    df = df.with_columns(
        lo=pl.min_horizontal("v", pl.col("lo")) if "lo" in df.columns else pl.col("v"),
        hi=pl.max_horizontal("v", pl.col("hi")) if "hi" in df.columns else pl.col("v"),
    ).select("t", "v", "lo", "hi")
    stats = values.select(avg=pl.col("v").mean(), p95=pl.col("v").quantile(0.95, interpolation="linear")).row(
        0, named=True
    )
    extent = df.select(
        lo=pl.col("lo").min(),
        hi=pl.col("hi").max(),
        peak_t=pl.col("t").filter(pl.col("hi") == pl.col("hi").max()).min(),
    ).row(0, named=True)
    lowest: float = extent["lo"]
    highest: float = extent["hi"]
    peak_t: float = extent["peak_t"]
    avg: float = stats["avg"]
    if extremes is not None:
        if (window_min := _finite(extremes.min)) is not None:
            lowest = min(lowest, window_min)
        if (window_max := _finite(extremes.max)) is not None and window_max > highest:
            # Only after the last step (a sample the step queries did not reach): it happened by the window's end.
            highest = window_max
            peak_t = extremes.at if extremes.at is not None else float(df["t"][-1])
        if (window_avg := _finite(extremes.avg)) is not None:
            avg = window_avg

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

    kept = downsample(df, keep_points)
    return Summary(
        min=lowest,
        avg=avg,
        max=highest,
        p95=stats["p95"],
        peak=highest,
        peak_at=to_time(peak_t),
        baseline=baseline,
        deviation_at=deviation_at,
        points=[(to_time(t), v) for t, v, _, _ in kept],
        bands=[(to_time(t), lo, hi) for t, _, lo, hi in kept] if extremes is not None else [],
    )


def _deviation_start(df: pl.DataFrame, baseline: float, threshold: float) -> datetime | None:
    """Start of the run of deviating steps that holds the largest deviation: where the excursion began. A step
    deviates by its farthest sample (`lo`, `hi`), so a spike shorter than the step counts."""
    far = pl.max_horizontal((pl.col("hi") - baseline).abs(), (pl.col("lo") - baseline).abs())
    dev = df.with_columns(d=far).with_columns(out=pl.col("d") > threshold)
    worst = dev["d"].arg_max()
    if worst is None or not dev["out"][worst]:
        return None
    outside = dev["out"].to_list()
    start = worst
    while start > 0 and outside[start - 1]:
        start -= 1
    return to_time(dev["t"][start])


def downsample(df: pl.DataFrame, keep_points: int) -> list[tuple[float, float, float, float]]:
    """At most `keep_points` rows (t, v, lo, hi): per bucket the one with the lowest `lo` and the one with the
    highest `hi`, so peaks and dips survive, and each keeps its own step's extremes."""
    if df.height <= keep_points:
        rows = df.rows()
    else:
        buckets = max(keep_points // 2, 1)
        indexed = df.with_row_index("i").with_columns(b=(pl.col("i") * buckets // df.height))
        picks = indexed.group_by("b").agg(
            lo=pl.col("i").get(pl.col("lo").arg_min()), hi=pl.col("i").get(pl.col("hi").arg_max())
        )
        keep = set(picks["lo"].to_list()) | set(picks["hi"].to_list())
        rows = indexed.filter(pl.col("i").is_in(sorted(keep))).select("t", "v", "lo", "hi").rows()
    return [(t, v, lo, hi) for t, v, lo, hi in rows]
