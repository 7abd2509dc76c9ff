"""Reads from PostgreSQL for the pages and the API: the incident list (named queries in queries.sql), and incidents
through the read model (shared.readmodel) with what only the page needs beside them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from services.web.listing import COUNT_CAP, Cursor, ListFilter, QueryError, sql_params
from shared.contracts import TimelineKind
from shared.db import Pool, Queries
from shared.readmodel import incidents
from shared.readmodel.models import Alert, Enrichment, Incident, SimilarIncident, TimelineEntry

KEY_PATTERN = re.compile(r"^INC-\d{6,}$")  # what an incident key looks like, before asking the database

Q = Queries(Path(__file__).with_name("queries.sql"))
# One entry per alert: the page shows the first `per_kind` of each kind, and counts the rest.
PER_ALERT_KINDS = [
    TimelineKind.alert_added.value,
    TimelineKind.alert_resolved.value,
    TimelineKind.alert_stale.value,
    TimelineKind.alert_refired.value,
    TimelineKind.alert_silenced.value,
    TimelineKind.alert_unsilenced.value,
]
# Below this many alerts matching a filter's equality matchers, collecting them beats probing incidents.
SPARSE_ALERTS = 2_000
# list_incidents with its alert check fenced: a constant edit of constant text (see the query's comment).
LIST_INCIDENTS_PROBE = Q.list_incidents.replace("/* probe fence */", "OFFSET 0")
if LIST_INCIDENTS_PROBE == Q.list_incidents:
    raise RuntimeError("queries.sql: list_incidents lost its /* probe fence */ comment")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: Cursor | None
    counts: dict[str, int]
    # States whose count reached COUNT_CAP: their number is a lower bound.
    capped: frozenset[str] = frozenset()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def list_incidents(pool: Pool, f: ListFilter) -> Page:
    params = sql_params(f)
    try:
        async with pool.connection() as conn:
            # prepare=False: plan with the actual values, so absent filters drop out of the plan.
            query = Q.list_incidents
            if params["has_matchers"]:
                dense = True
                if params["label_eq"] is not None:
                    bound = {"label_eq": params["label_eq"], "bound": SPARSE_ALERTS}
                    counted_alerts = await (await conn.execute(Q.matching_alerts_capped, bound)).fetchone()
                    dense = counted_alerts is not None and counted_alerts["n"] >= SPARSE_ALERTS
                query = LIST_INCIDENTS_PROBE if dense else Q.list_incidents
            rows = await (await conn.execute(query, params, prepare=False)).fetchall()
            counted = await (await conn.execute(Q.count_by_state, params, prepare=False)).fetchall()
    except psycopg.errors.InvalidRegularExpression as exc:
        # Python accepted the regex but PostgreSQL's engine did not: still the caller's to fix.
        raise QueryError("matcher", f"invalid regex: {exc.diag.message_primary}") from None
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        next_cursor = Cursor(rows[-1]["opened_at"], rows[-1]["id"])
    counts = {r["state"]: min(r["n"], COUNT_CAP) for r in counted}
    capped = frozenset(r["state"] for r in counted if r["n"] > COUNT_CAP)
    return Page(rows, next_cursor, counts, capped)


async def incident(pool: Pool, key: str) -> Incident | None:
    async with pool.connection() as conn:
        return await incidents.incident(conn, key)


@dataclass(frozen=True)
class Detail:
    """What the API says of one incident: all it has, and the earlier incidents most like it."""

    whole: incidents.Whole
    similar: list[SimilarIncident]


async def incident_detail(pool: Pool, key: str) -> Detail | None:
    async with pool.connection() as conn, incidents.reading_snapshot(conn) as snapshot:
        found = await incidents.whole(snapshot, key)
        if found is None:
            return None
        return Detail(found, await incidents.similar(snapshot, found.incident.id))


@dataclass(frozen=True)
class PageDetail:
    """What the incident page shows: the first alerts, a summary of all, a timeline with long runs cut."""

    incident: Incident
    alerts: list[Alert]
    alert_summary: list[dict[str, Any]]
    alert_starts: list[Any]
    timeline: list[TimelineEntry]
    timeline_counts: dict[str, int]
    enrichment: Enrichment | None
    similar: list[SimilarIncident]


async def incident_page_detail(pool: Pool, key: str, *, alert_limit: int | None, per_kind: int) -> PageDetail | None:
    async with pool.connection() as conn, incidents.reading_snapshot(conn) as snapshot:
        found = await incidents.incident(snapshot, key)
        if found is None:
            return None
        ident = {"incident_id": found.id}
        alerts = await incidents.alerts(snapshot, found.id, limit=alert_limit)
        summary = await (await snapshot.execute(Q.incident_alert_summary, ident)).fetchall()
        page = {**ident, "per_kind": per_kind, "per_alert_kinds": PER_ALERT_KINDS}
        timeline = [
            TimelineEntry.from_row(row)
            for row in await (await snapshot.execute(Q.incident_timeline_page, page)).fetchall()
        ]
        counts = await (await snapshot.execute(Q.incident_timeline_counts, ident)).fetchall()
        enrichment = await incidents.enrichment(snapshot, found.id)
        starts: list[Any] = []
        if enrichment is not None:
            starts = [r["starts_at"] for r in await (await snapshot.execute(Q.incident_alert_starts, ident)).fetchall()]
        similar = await incidents.similar(snapshot, found.id)
    return PageDetail(
        found, alerts, summary, starts, timeline, {r["kind"]: r["n"] for r in counts}, enrichment, similar
    )
