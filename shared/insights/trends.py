"""Incidents per day (or week) by severity, and MTTA/MTTR over time: what the insights page charts.

The figures are PostgreSQL's (trends.sql), over the same incidents as the audit: announced, opened in the period;
maintenance incidents counted as incidents but left out of response times. This module cuts the period into buckets
and fills the buckets PostgreSQL had no row for, so a quiet day shows as zero, not as a gap in the axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from shared.contracts import SEVERITY_RANK
from shared.db import Connection, Queries

Q = Queries(Path(__file__).with_name("trends.sql"))
Bucket = Literal["day", "week"]
# Past this many days a bar per day is thinner than a pixel on a phone: weeks instead.
DAILY_UP_TO_DAYS = 92


@dataclass(frozen=True)
class Period:
    """[since, until), cut into buckets of one `bucket` (UTC days, or ISO weeks starting on Monday)."""

    since: datetime
    until: datetime
    bucket: Bucket

    @classmethod
    def of(cls, since: datetime, until: datetime) -> Period:
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must carry a time zone")
        if until <= since:
            raise ValueError("until must be after since")
        return cls(since, until, "day" if until - since <= timedelta(days=DAILY_UP_TO_DAYS) else "week")

    def starts(self) -> list[datetime]:
        """The buckets' starts: the first one at or before `since`, the last one before `until`."""
        at = bucket_start(self.since, self.bucket)
        step = timedelta(days=1 if self.bucket == "day" else 7)
        starts = []
        while at < self.until:
            starts.append(at)
            at += step
        return starts


def bucket_start(at: datetime, bucket: Bucket) -> datetime:
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Response:
    """MTTA and MTTR of some incidents (seconds; None when none was acknowledged, or resolved)."""

    incidents: int = 0
    acknowledged: int = 0
    tta_median_s: float | None = None
    tta_p90_s: float | None = None
    resolved: int = 0
    ttr_median_s: float | None = None
    ttr_p90_s: float | None = None


@dataclass(frozen=True)
class TrendBucket:
    start: datetime
    # Incidents opened in the bucket, by severity (every severity seen in the period, zero where none).
    by_severity: dict[str, int]
    response: Response

    @property
    def incidents(self) -> int:
        return sum(self.by_severity.values())


@dataclass(frozen=True)
class Trends:
    period: Period
    severities: list[str]  # most severe first; unknown severities after the known ones, by name
    buckets: list[TrendBucket]
    response: Response  # over the whole period
    totals: dict[str, int] = field(default_factory=dict)  # incidents of the period by severity

    @property
    def incidents(self) -> int:
        return sum(self.totals.values())


def severity_order(severities: Iterable[str]) -> list[str]:
    known = [s for s in SEVERITY_RANK if s in severities]
    return known + sorted(set(severities) - set(known))


def _response(row: Mapping[str, Any] | None) -> Response:
    if row is None:
        return Response()
    return Response(**{name: row[name] for name in Response.__dataclass_fields__})


def trends_of(period: Period, counted: Iterable[Mapping[str, Any]], responses: Iterable[Mapping[str, Any]]) -> Trends:
    """The period's buckets from trends.sql's rows: `incidents_per_bucket` (bucket, severity, incidents) and
    `response_per_bucket` (bucket NULL: the whole period); `bucket` is the 1-based index into `period.starts()`."""
    counts: dict[int, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for row in counted:
        counts.setdefault(row["bucket"], {})[row["severity"]] = row["incidents"]
        totals[row["severity"]] = totals.get(row["severity"], 0) + row["incidents"]
    by_bucket: dict[int | None, Mapping[str, Any]] = {r["bucket"]: r for r in responses}
    severities = severity_order(totals)
    buckets = [
        TrendBucket(
            start,
            {s: counts.get(index, {}).get(s, 0) for s in severities},
            _response(by_bucket.get(index)),
        )
        for index, start in enumerate(period.starts(), start=1)
    ]
    return Trends(period, severities, buckets, _response(by_bucket.get(None)), {s: totals[s] for s in severities})


async def read_trends(conn: Connection, period: Period) -> Trends:
    params = {"since": period.since, "until": period.until, "starts": period.starts()}
    counted = await (await conn.execute(Q.incidents_per_bucket, params)).fetchall()
    responses = await (await conn.execute(Q.response_per_bucket, params)).fetchall()
    return trends_of(period, counted, responses)
