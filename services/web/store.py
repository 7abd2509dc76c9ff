"""Reads from PostgreSQL for the pages and the API (named queries in queries.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.web.listing import COUNT_CAP, Cursor, ListFilter, QueryError, sql_params
from shared.db import Queries

Q = Queries(Path(__file__).with_name("queries.sql"))
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


async def list_incidents(pool: AsyncConnectionPool[Any], f: ListFilter) -> Page:
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


async def incident(pool: AsyncConnectionPool[Any], key: str) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        return await (await conn.execute(Q.incident_by_key, {"key": key})).fetchone()


@dataclass(frozen=True)
class Detail:
    incident: dict[str, Any]
    alerts: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    enrichment: dict[str, Any] | None


async def incident_detail(pool: AsyncConnectionPool[Any], key: str) -> Detail | None:
    async with pool.connection() as conn:
        row = await (await conn.execute(Q.incident_by_key, {"key": key})).fetchone()
        if row is None:
            return None
        ident = {"incident_id": row["id"]}
        alerts = await (await conn.execute(Q.incident_alerts, ident)).fetchall()
        timeline = await (await conn.execute(Q.incident_timeline, ident)).fetchall()
        enrichment = await (await conn.execute(Q.incident_enrichment, ident)).fetchone()
    return Detail(row, alerts, timeline, enrichment)


@dataclass(frozen=True)
class PageDetail:
    """What the incident page shows: the first alerts, a summary of all, a timeline with long runs cut."""

    incident: dict[str, Any]
    alerts: list[dict[str, Any]]
    alert_summary: list[dict[str, Any]]
    alert_starts: list[Any]
    timeline: list[dict[str, Any]]
    timeline_counts: dict[str, int]
    enrichment: dict[str, Any] | None


async def incident_page_detail(
    pool: AsyncConnectionPool[Any], key: str, *, alert_limit: int | None, per_kind: int
) -> PageDetail | None:
    async with pool.connection() as conn:
        row = await (await conn.execute(Q.incident_by_key, {"key": key})).fetchone()
        if row is None:
            return None
        ident = {"incident_id": row["id"]}
        alerts = await (await conn.execute(Q.incident_alerts_first, {**ident, "limit": alert_limit})).fetchall()
        summary = await (await conn.execute(Q.incident_alert_summary, ident)).fetchall()
        timeline = await (await conn.execute(Q.incident_timeline_page, {**ident, "per_kind": per_kind})).fetchall()
        counts = await (await conn.execute(Q.incident_timeline_counts, ident)).fetchall()
        enrichment = await (await conn.execute(Q.incident_enrichment, ident)).fetchone()
        starts: list[Any] = []
        if enrichment is not None:
            starts = [r["starts_at"] for r in await (await conn.execute(Q.incident_alert_starts, ident)).fetchall()]
    return PageDetail(row, alerts, summary, starts, timeline, {r["kind"]: r["n"] for r in counts}, enrichment)
