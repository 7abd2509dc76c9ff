"""Reads from PostgreSQL for the pages and the API (named queries in queries.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.web.listing import Cursor, ListFilter, QueryError, sql_params
from shared.db import Queries

Q = Queries(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: Cursor | None
    counts: dict[str, int]


async def list_incidents(pool: AsyncConnectionPool[Any], f: ListFilter) -> Page:
    params = sql_params(f)
    try:
        async with pool.connection() as conn:
            # prepare=False: plan with the actual values, so absent filters drop out of the plan.
            rows = await (await conn.execute(Q.list_incidents, params, prepare=False)).fetchall()
            counted = await (await conn.execute(Q.count_by_state, params, prepare=False)).fetchall()
    except psycopg.errors.InvalidRegularExpression as exc:
        # Python accepted the regex but PostgreSQL's engine did not: still the caller's to fix.
        raise QueryError("matcher", f"invalid regex: {exc.diag.message_primary}") from None
    next_cursor = None
    if len(rows) > f.limit:
        rows = rows[: f.limit]
        next_cursor = Cursor(rows[-1]["opened_at"], rows[-1]["id"])
    counts = {"open": 0, "acknowledged": 0, "resolved": 0}
    counts.update({r["state"]: r["n"] for r in counted})
    return Page(rows, next_cursor, counts)


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


async def stored_report(pool: AsyncConnectionPool[Any], incident_id: int, fmt: str) -> bytes | None:
    async with pool.connection() as conn:
        row = await (await conn.execute(Q.latest_report, {"incident_id": incident_id, "format": fmt})).fetchone()
    return bytes(row["content"]) if row else None
