"""Period audit reports: every incident of a time range, with MTTA/MTTR and the top offenders.

Which incidents a period holds: the announced incidents whose `opened_at` is in [since, until). An incident opened
earlier and still open is not part of the period (it belongs to the period it opened in); "still open" lists the
period's incidents that are not resolved as of `as_of` (the database's clock when the data was read).

Retention (services/correlator/retention.py) deletes the incidents that resolved and opened before its cut-off, and
records the latest cut-off it deleted before: the retention horizon, read in the audit's snapshot. A period that starts
at or after it is complete; one that starts before it is complete only from the horizon on (of the incidents opened
before it, those also resolved before it are gone).

- MTTA: acknowledged_at - opened_at, over the period's acknowledged incidents.
- MTTR: resolved_at - opened_at, over the period's resolved incidents.
- Maintenance incidents (the correlator marked them: opened by alerts inside a maintenance window) are listed and
  counted like the others, but left out of MTTA and MTTR (and of the counts beside them): planned work is not a
  response time. `maintenance_count` says how many there were.
- Mean and p90 (linear interpolation between closest ranks).
- Response times: MTTA and MTTR per severity (most severe first) and per rule, median and p90, over the same
  incidents as the overall figures (maintenance left out).
- Missed targets: with response targets per severity (VIGIL_RESPONSE_TARGETS_FILE, shared/reports/response_targets.py),
  the period's incidents (maintenance left out) that missed one, decided in Python as their rows stream by.
- Noisy alerts: the alert names (per host) with the most alert occurrences in the period's incidents.
- Flapping alerts: one alert series (fingerprint) that fired at least `FLAP_MIN_OCCURRENCES` times within the
  period's incidents, or fired in an incident the correlator marked flapping.
- Noise and alert quality (shared/insights/noise.py, which defines every figure): the funnel notifications → alert
  occurrences → incidents, with the groups held back by `min_alerts`; per alert name and per rule, notifications,
  occurrences, incidents, held-back groups, shares unacknowledged and flapping, median time firing; the noisiest alerts
  with a suggestion each. Maintenance incidents are left out of all of it (the funnel counts them apart), as from the
  response times.

PostgreSQL computes all of it (audit.sql) in one REPEATABLE READ snapshot. `reading` opens the snapshot and reads the
summary; each table of the report is read, when a renderer iterates it, through a server-side cursor `CHUNK_ROWS` rows
at a time, so memory stays flat however many incidents the period holds: a renderer writes each row out as it comes.
The connection is a blocking one: an export runs in a thread of its own, beside the event loop, not on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row, namedtuple_row

from shared.contracts import SEVERITY_RANK
from shared.db import SET_LOCAL_NO_JIT, Queries
from shared.insights import noise
from shared.reports.response_targets import NO_TARGETS, Miss, ResponseTargets, misses

Q = Queries(Path(__file__).with_name("audit.sql"))
PERIODS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
Period = Literal["24h", "7d", "30d"]
FLAP_MIN_OCCURRENCES = 3
TOP_NOISY = 20
# Missed targets the Markdown lists (the XLSX lists all): past this the reader wants the sheet, not a longer page.
TOP_MISSED = 50
# Rows fetched per round trip: large enough that the round trips cost little, small enough to be nothing in memory.
CHUNK_ROWS = 2_000
# PostgreSQL's memory per sort or hash of the audit's queries (see _tune); a constant, never from input.
AUDIT_WORK_MEM = "32MB"
_cursor_numbers = itertools.count(1)


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
class Rows:
    """One table of the audit, in the order PostgreSQL sorted it, as named tuples. Iterating reads it through a
    server-side cursor, `CHUNK_ROWS` at a time; each iteration reads it afresh from the report's snapshot."""

    conn: psycopg.Connection[Any]
    query: str
    params: Mapping[str, Any]

    def __iter__(self) -> Iterator[Any]:
        # The cursor lives in the snapshot's transaction; `reading` closes that only after the renderer is done.
        with self.conn.cursor(name=f"audit_{next(_cursor_numbers)}", row_factory=namedtuple_row) as cur:
            cur.itersize = CHUNK_ROWS
            cur.execute(self.query, self.params)
            yield from cur

    def rows(self) -> list[tuple[Any, ...]]:
        """All rows at once, as plain tuples: for small tables and tests, not for a period's incidents."""
        return [tuple(row) for row in self]

    def column(self, name: str) -> list[Any]:
        return [getattr(row, name) for row in self]


@dataclass(frozen=True)
class MissedTargets:
    """The targets the period's incidents missed, in the order the incidents opened: iterating streams the candidate
    incidents (`Rows`) and yields a `Miss` for each target missed."""

    targets: ResponseTargets
    candidates: Rows
    as_of: datetime

    def __iter__(self) -> Iterator[Miss]:
        if not self.targets:
            return  # nothing can be missed: no need to ask PostgreSQL
        for row in self.candidates:
            yield from misses(
                self.targets,
                key=row.key,
                severity=row.severity,
                rule=row.rule,
                opened_at=row.opened_at,
                acknowledged_at=row.acknowledged_at,
                resolved_at=row.resolved_at,
                as_of=self.as_of,
            )

    def first(self, limit: int) -> tuple[list[Miss], int]:
        """At most `limit` misses, and how many there are in all (counted as the rest stream by, not kept)."""
        shown: list[Miss] = []
        total = 0
        for miss in self:
            if total < limit:
                shown.append(miss)
            total += 1
        return shown, total


@dataclass(frozen=True)
class QualityRows:
    """A noise table (`noise_by_alert` or `noise_by_rule`) streamed like `Rows`, each row as a `noise.Quality`."""

    rows: Rows

    def __iter__(self) -> Iterator[noise.Quality]:
        for row in self.rows:
            yield noise.quality_of(row._asdict())


@dataclass(frozen=True)
class AuditReport:
    """The audit of [since, until) as seen at `as_of`: figures read at once, tables read as they are iterated.

    incidents: key, title, state, severity, rule, hosts, alert_count, flapping, maintenance, opened_at, acknowledged_at,
        acknowledged_by, resolved_at, resolved_by, tta_s, ttr_s, acknowledged_via ('silence' or None)
        (times: aware datetimes; durations: seconds)
    by_severity: severity, incidents, open       by_alertname: alertname, alerts, incidents, hosts
    by_host: host, incidents, alerts             noisy: alertname, host, alerts, incidents
    flapping: alertname, host, fingerprint, occurrences, incidents, marked_flapping
    still_open: key, title, state, severity, hosts, opened_at, acknowledged_at, age_s
    response_by_severity: severity, incidents, acknowledged, tta_median_s, tta_p90_s, resolved, ttr_median_s,
        ttr_p90_s (maintenance incidents left out)
    response_by_rule: rule, and the same columns
    missed: the targets missed (`Miss`), with `targets` the targets they are measured against
    noise_funnel, noise_by_alert, noise_by_rule, noisiest: noise and alert quality (shared.insights.noise), the tables
        streamed as `noise.Quality`, noisiest first
    """

    since: datetime
    until: datetime
    as_of: datetime
    # Incidents resolved and opened before it may have been deleted; None: retention has deleted nothing yet.
    retention_horizon: datetime | None
    total: int
    still_open_count: int
    # Incidents of the period marked maintenance: in `total`, not in `mtta` or `mttr`.
    maintenance_count: int
    # Incidents a silence acknowledged (VIGIL_SILENCE_ACKNOWLEDGES): in `mtta`, but not a person's response.
    acknowledged_by_silence: int
    mtta: Durations
    mttr: Durations
    incidents: Rows
    by_severity: Rows
    by_alertname: Rows
    by_host: Rows
    noisy: Rows
    flapping: Rows
    still_open: Rows
    response_by_severity: Rows
    response_by_rule: Rows
    targets: ResponseTargets
    missed: MissedTargets
    noise_funnel: noise.Funnel
    noise_by_alert: QualityRows
    noise_by_rule: QualityRows
    noisiest: list[noise.Noisy]

    @property
    def complete_from(self) -> datetime:
        return complete_from(self.since, self.retention_horizon)

    @property
    def complete(self) -> bool:
        return self.complete_from == self.since


def complete_from(since: datetime, horizon: datetime | None) -> datetime:
    """From when an audit of a period starting at `since` lists every incident of the period: `since`, unless
    retention's horizon is later (it deleted incidents opened before the horizon, when they resolved before it too)."""
    return since if horizon is None else max(since, horizon)


@contextmanager
def reading(
    conn: psycopg.Connection[Any], since: datetime, until: datetime, targets: ResponseTargets = NO_TARGETS
) -> Iterator[AuditReport]:
    """The audit of [since, until), valid inside the block: its tables are read from one snapshot as they are iterated.

    On an idle connection the block is one REPEATABLE READ READ ONLY transaction of its own; inside a caller's
    transaction, the caller's snapshot is used. `targets`: the response targets the missed-targets list measures
    against (none: an empty list).
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must carry a time zone")
    if until <= since:
        raise ValueError("until must be after since")
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        with conn.transaction():
            # One snapshot for every read: the figures and the tables agree with each other.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            _tune(conn)
            yield _report(conn, since, until, targets)
    else:
        yield _report(conn, since, until, targets)


def _tune(conn: psycopg.Connection[Any]) -> None:
    """Settings for the audit's own transaction (SET LOCAL: they end with it).

    No JIT (shared.db.SET_LOCAL_NO_JIT says why: a third of the noise queries' time at 100,000 incidents). Its sorts
    and hashes of 200,000 alerts spilled to disk at the default 4 MB: AUDIT_WORK_MEM keeps them in memory, per sort
    or hash, for the few exports the web runs at a time.
    """
    conn.execute(SET_LOCAL_NO_JIT)
    conn.execute(f"SET LOCAL work_mem = '{AUDIT_WORK_MEM}'")


def _report(conn: psycopg.Connection[Any], since: datetime, until: datetime, targets: ResponseTargets) -> AuditReport:
    period = {"since": since, "until": until}
    with conn.cursor(row_factory=dict_row) as cur:
        summary = cur.execute(Q.audit_summary, period).fetchone()
        horizon = cur.execute(Q.audit_retention_horizon).fetchone()
    assert summary is not None  # an aggregate without GROUP BY always answers one row
    noise_all = noise.params(since, until)
    ranks = {
        "rank_names": list(SEVERITY_RANK),
        "rank_values": list(SEVERITY_RANK.values()),
        "default_rank": SEVERITY_RANK["warning"],
    }
    return AuditReport(
        since=since,
        until=until,
        as_of=summary["as_of"],
        retention_horizon=horizon["deleted_before"] if horizon is not None else None,
        total=summary["incidents"],
        still_open_count=summary["still_open"],
        maintenance_count=summary["maintenance"],
        acknowledged_by_silence=summary["acknowledged_by_silence"],
        mtta=Durations(summary["acknowledged"], summary["tta_mean_s"], summary["tta_p90_s"]),
        mttr=Durations(summary["resolved"], summary["ttr_mean_s"], summary["ttr_p90_s"]),
        incidents=Rows(conn, Q.audit_incidents, period),
        by_severity=Rows(conn, Q.audit_by_severity, {**period, **ranks}),
        by_alertname=Rows(conn, Q.audit_by_alertname, period),
        by_host=Rows(conn, Q.audit_by_host, period),
        noisy=Rows(conn, Q.audit_noisy, {**period, "top": TOP_NOISY}),
        flapping=Rows(conn, Q.audit_flapping, {**period, "min_occurrences": FLAP_MIN_OCCURRENCES}),
        still_open=Rows(conn, Q.audit_still_open, period),
        response_by_severity=Rows(conn, Q.audit_response_by_severity, {**period, **ranks}),
        response_by_rule=Rows(conn, Q.audit_response_by_rule, period),
        targets=targets,
        missed=MissedTargets(
            targets,
            Rows(conn, Q.audit_target_candidates, {**period, "severities": list(targets.by_severity)}),
            summary["as_of"],
        ),
        noise_funnel=noise.read_funnel_sync(conn, since, until),
        noise_by_alert=QualityRows(Rows(conn, noise.Q.noise_by_alert, noise_all)),
        noise_by_rule=QualityRows(Rows(conn, noise.Q.noise_by_rule, noise_all)),
        noisiest=noise.read_noisiest_sync(conn, since, until),
    )
