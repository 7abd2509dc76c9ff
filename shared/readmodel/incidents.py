"""Reads of the read model: an incident by its key, then its alerts, timeline and enrichment by its id.

Each function takes a connection whose rows are dicts (shared.db.open_pool's); a caller that needs them to agree
reads them in one transaction (see `reading_snapshot`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg

from shared.db import Connection
from shared.readmodel.models import Alert, Enrichment, Incident, LastComment, SimilarIncident, TimelineEntry
from shared.readmodel.queries import QUERIES
from shared.signatures import KIND_WEIGHTS

# Similar past incidents listed per incident.
SIMILAR_LIMIT = 5
# How the lookup finds its candidates (see the query `similar_incidents`): at most this many of the incident's
# tokens, each giving at most this many of the most recent earlier incidents holding it. With a signature of a few
# labels and alert names and ten log templates, every token is a probe; 24 * 100 candidates are scored in
# milliseconds (`make bench`'s similar_incidents_100k).
SIMILAR_MAX_PROBES = 24
SIMILAR_PER_TOKEN = 100


async def incident(conn: Connection, key: str) -> Incident | None:
    """The announced incident `key`, or None (no such incident, or not announced yet)."""
    row = await (await conn.execute(QUERIES.incident_by_key, {"key": key})).fetchone()
    return None if row is None else Incident.model_validate(row)


async def alerts(conn: Connection, incident_id: int, *, limit: int | None = None) -> list[Alert]:
    """The incident's alerts by start time; with `limit`, only the first that many."""
    if limit is None:
        rows = await (await conn.execute(QUERIES.incident_alerts, {"incident_id": incident_id})).fetchall()
    else:
        params = {"incident_id": incident_id, "limit": limit}
        rows = await (await conn.execute(QUERIES.incident_alerts_first, params)).fetchall()
    return [Alert.from_row(row) for row in rows]


async def timeline(conn: Connection, incident_id: int) -> list[TimelineEntry]:
    rows = await (await conn.execute(QUERIES.incident_timeline, {"incident_id": incident_id})).fetchall()
    return [TimelineEntry.from_row(row) for row in rows]


async def enrichment(conn: Connection, incident_id: int) -> Enrichment | None:
    row = await (await conn.execute(QUERIES.incident_enrichment, {"incident_id": incident_id})).fetchone()
    return None if row is None else Enrichment.model_validate(row)


async def similar(conn: Connection, incident_id: int, *, limit: int = SIMILAR_LIMIT) -> list[SimilarIncident]:
    """Up to `limit` earlier announced incidents with the closest signatures to incident `incident_id`'s, closest
    first (ties: the more recent first), each with its last comment."""
    params = {
        "incident_id": incident_id,
        "kinds": list(KIND_WEIGHTS),
        "weights": list(KIND_WEIGHTS.values()),
        "max_probes": SIMILAR_MAX_PROBES,
        "per_token": SIMILAR_PER_TOKEN,
        "limit": limit,
    }
    rows = await (await conn.execute(QUERIES.similar_incidents, params)).fetchall()
    return [
        SimilarIncident.model_validate(
            {
                **row,
                "last_comment": LastComment(at=row["comment_at"], actor=row["comment_by"], text=row["comment"] or "")
                if row["comment_at"] is not None
                else None,
            }
        )
        for row in rows
    ]


@asynccontextmanager
async def reading_snapshot(conn: Connection) -> AsyncIterator[Connection]:
    """One REPEATABLE READ snapshot for several reads when the caller has not opened a transaction, so an incident's
    alerts, timeline and enrichment agree with each other; inside the caller's transaction, that one."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        async with conn.transaction():
            await conn.execute(QUERIES.read_only_snapshot)
            yield conn
    else:
        yield conn


@dataclass(frozen=True)
class Whole:
    """An incident with all it has: alerts, timeline and enrichment, read in one snapshot."""

    incident: Incident
    alerts: list[Alert]
    timeline: list[TimelineEntry]
    enrichment: Enrichment | None


async def whole(conn: Connection, key: str) -> Whole | None:
    """The announced incident `key` with its alerts, timeline and enrichment as of one moment, or None."""
    async with reading_snapshot(conn) as snapshot:
        found = await incident(snapshot, key)
        if found is None:
            return None
        return Whole(
            found,
            await alerts(snapshot, found.id),
            await timeline(snapshot, found.id),
            await enrichment(snapshot, found.id),
        )
