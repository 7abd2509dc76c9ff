"""Period audit reports: every incident of a time range, with MTTA/MTTR and the top offenders.

Which incidents a period holds: the announced incidents whose `opened_at` is in [since, until). An incident opened
earlier and still open is not part of the period (it belongs to the period it opened in); "still open" lists the
period's incidents that are not resolved as of `as_of` (the database's clock when the data was read).

- MTTA: acknowledged_at - opened_at, over the period's acknowledged incidents.
- MTTR: resolved_at - opened_at, over the period's resolved incidents.
- Mean and p90 (linear interpolation between closest ranks).
- Noisy alerts: the alert names (per host) with the most alert occurrences in the period's incidents.
- Flapping alerts: one alert series (fingerprint) that fired at least `FLAP_MIN_OCCURRENCES` times within the
  period's incidents, or fired in an incident the correlator marked flapping.

`load` streams rows with COPY into polars; `summarise` is the pure computation; renderers read the result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import polars as pl
import psycopg

from services.reporter.queries import QUERIES
from shared.contracts import SEVERITY_RANK

PERIODS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
Period = Literal["24h", "7d", "30d"]
FLAP_MIN_OCCURRENCES = 3
TOP_NOISY = 20

INCIDENT_SCHEMA: dict[str, Any] = {
    "id": pl.Int64,
    "key": pl.String,
    "title": pl.String,
    "state": pl.String,
    "severity": pl.String,
    "rule": pl.String,
    "hosts": pl.String,
    "alert_count": pl.Int64,
    "flapping": pl.String,
    "opened_at": pl.Int64,
    "acknowledged_at": pl.Int64,
    "acknowledged_by": pl.String,
    "resolved_at": pl.Int64,
    "resolved_by": pl.String,
}
HOST_SCHEMA: dict[str, Any] = {"incident_id": pl.Int64, "host": pl.String}
ALERT_SCHEMA: dict[str, Any] = {
    "incident_id": pl.Int64,
    "alertname": pl.String,
    "host": pl.String,
    "severity": pl.String,
    "fingerprint": pl.String,
}
TIMES = ("opened_at", "acknowledged_at", "resolved_at")


def period_range(period: Period, as_of: datetime) -> tuple[datetime, datetime]:
    """The ready-made ranges: the last 24 hours, 7 days or 30 days up to `as_of`."""
    return as_of - PERIODS[period], as_of


@dataclass(frozen=True)
class Durations:
    """Seconds; None when no incident of the period has the timestamp."""

    count: int
    mean_s: float | None
    p90_s: float | None


@dataclass(frozen=True)
class AuditReport:
    """The audit of [since, until) as seen at `as_of`. Tables are polars DataFrames (iterate with `iter_rows`).

    incidents: key, title, state, severity, rule, hosts, alert_count, flapping, opened_at, acknowledged_at,
        acknowledged_by, resolved_at, resolved_by, tta_s, ttr_s   (times: Datetime UTC; durations: seconds)
    by_severity: severity, incidents, open       by_alertname: alertname, alerts, incidents, hosts
    by_host: host, incidents, alerts             noisy: alertname, host, alerts, incidents
    flapping: alertname, host, fingerprint, occurrences, incidents, marked_flapping
    still_open: key, title, state, severity, hosts, opened_at, acknowledged_at, age_s
    """

    since: datetime
    until: datetime
    as_of: datetime
    incidents: pl.DataFrame
    mtta: Durations
    mttr: Durations
    by_severity: pl.DataFrame
    by_alertname: pl.DataFrame
    by_host: pl.DataFrame
    noisy: pl.DataFrame
    flapping: pl.DataFrame
    still_open: pl.DataFrame

    @property
    def total(self) -> int:
        return self.incidents.height


async def _copy_frame(
    conn: psycopg.AsyncConnection[Any], sql: str, params: dict[str, Any], schema: dict[str, Any]
) -> pl.DataFrame:
    buffer = io.BytesIO()
    async with conn.cursor() as cur, cur.copy(sql, params) as copy:  # type: ignore[arg-type]
        async for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pl.DataFrame(schema=schema)
    return pl.read_csv(buffer, schema=schema, has_header=True)


async def load(conn: psycopg.AsyncConnection[Any], since: datetime, until: datetime) -> AuditReport:
    """Read the period [since, until) in one consistent snapshot and summarise it."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must carry a time zone")
    if until <= since:
        raise ValueError("until must be after since")
    params = {"since": since, "until": until}
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        async with conn.transaction():
            # One snapshot for the three reads: incidents, hosts and alerts agree with each other.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await _load(conn, params)
    return await _load(conn, params)


async def _load(conn: psycopg.AsyncConnection[Any], params: dict[str, datetime]) -> AuditReport:
    row = await (await conn.execute(QUERIES.audit_as_of)).fetchone()
    as_of = row["as_of"] if isinstance(row, dict) else row[0]  # type: ignore[index]
    incidents = await _copy_frame(conn, QUERIES.audit_incidents_csv, params, INCIDENT_SCHEMA)
    hosts = await _copy_frame(conn, QUERIES.audit_incident_hosts_csv, params, HOST_SCHEMA)
    alerts = await _copy_frame(conn, QUERIES.audit_alerts_csv, params, ALERT_SCHEMA)
    return summarise(incidents, hosts, alerts, since=params["since"], until=params["until"], as_of=as_of)


def _durations(values: pl.Series) -> Durations:
    present = values.drop_nulls()
    if present.is_empty():
        return Durations(0, None, None)
    mean = present.mean()
    p90 = present.quantile(0.9, interpolation="linear")
    return Durations(present.len(), float(mean) if mean is not None else None, float(p90) if p90 is not None else None)


def _times(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(name).cast(pl.Datetime("us")).dt.replace_time_zone("UTC") for name in TIMES if name in frame.columns
    )


def summarise(
    incidents: pl.DataFrame,
    hosts: pl.DataFrame,
    alerts: pl.DataFrame,
    *,
    since: datetime,
    until: datetime,
    as_of: datetime,
) -> AuditReport:
    """The whole audit from three raw frames (as COPY gives them: times as epoch microseconds). Pure."""
    frame = incidents.with_columns(
        ((pl.col("acknowledged_at") - pl.col("opened_at")) / 1_000_000).alias("tta_s"),
        ((pl.col("resolved_at") - pl.col("opened_at")) / 1_000_000).alias("ttr_s"),
        pl.col("flapping").is_in(["t", "true", "True"]).alias("flapping"),
        pl.col("hosts").fill_null(""),
    )
    frame = _times(frame)

    rank = pl.col("severity").replace_strict(SEVERITY_RANK, default=SEVERITY_RANK["warning"], return_dtype=pl.Int64)
    by_severity = (
        frame.group_by("severity")
        .agg(pl.len().alias("incidents"), (pl.col("state") != "resolved").sum().alias("open"))
        .with_columns(rank.alias("rank"))
        .sort(["rank", "severity"], descending=[True, False])
        .drop("rank")
        .with_columns(pl.col("incidents").cast(pl.Int64), pl.col("open").cast(pl.Int64))
    )

    by_alertname = (
        alerts.group_by("alertname")
        .agg(
            pl.len().alias("alerts"),
            pl.col("incident_id").n_unique().alias("incidents"),
            pl.col("host").filter(pl.col("host") != "").n_unique().alias("hosts"),
        )
        .sort(["alerts", "alertname"], descending=[True, False])
        .with_columns(pl.col(c).cast(pl.Int64) for c in ("alerts", "incidents", "hosts"))
    )

    alerts_per_host = alerts.filter(pl.col("host") != "").group_by("host").agg(pl.len().alias("alerts"))
    by_host = (
        hosts.group_by("host")
        .agg(pl.col("incident_id").n_unique().alias("incidents"))
        .join(alerts_per_host, on="host", how="full", coalesce=True)
        .with_columns(pl.col("incidents").fill_null(0).cast(pl.Int64), pl.col("alerts").fill_null(0).cast(pl.Int64))
        .sort(["incidents", "alerts", "host"], descending=[True, True, False])
    )

    noisy = (
        alerts.group_by("alertname", "host")
        .agg(pl.len().alias("alerts"), pl.col("incident_id").n_unique().alias("incidents"))
        .sort(["alerts", "alertname", "host"], descending=[True, False, False])
        .head(TOP_NOISY)
        .with_columns(pl.col("alerts").cast(pl.Int64), pl.col("incidents").cast(pl.Int64))
    )

    marked = frame.filter(pl.col("flapping")).select("id")
    flapping = (
        alerts.with_columns(pl.col("incident_id").is_in(marked["id"].implode()).alias("marked"))
        .group_by("fingerprint")
        .agg(
            pl.col("alertname").first(),
            pl.col("host").first(),
            pl.len().alias("occurrences"),
            pl.col("incident_id").n_unique().alias("incidents"),
            pl.col("marked").any().alias("marked_flapping"),
        )
        .filter((pl.col("occurrences") >= FLAP_MIN_OCCURRENCES) | pl.col("marked_flapping"))
        .select("alertname", "host", "fingerprint", "occurrences", "incidents", "marked_flapping")
        .with_columns(pl.col("occurrences").cast(pl.Int64), pl.col("incidents").cast(pl.Int64))
        .sort(["occurrences", "alertname", "fingerprint"], descending=[True, False, False])
    )

    as_of_us = int(as_of.timestamp() * 1_000_000)
    still_open = (
        frame.filter(pl.col("state") != "resolved")
        .with_columns(((pl.lit(as_of_us) - pl.col("opened_at").dt.epoch("us")) / 1_000_000).alias("age_s"))
        .select("key", "title", "state", "severity", "hosts", "opened_at", "acknowledged_at", "age_s")
        .sort(["opened_at", "key"])
    )

    return AuditReport(
        since=since,
        until=until,
        as_of=as_of,
        incidents=frame.drop("id"),
        mtta=_durations(frame["tta_s"]),
        mttr=_durations(frame["ttr_s"]),
        by_severity=by_severity,
        by_alertname=by_alertname,
        by_host=by_host,
        noisy=noisy,
        flapping=flapping,
        still_open=still_open,
    )
