"""Storing a rendered report set as the incident's next version, once: the only writer of `reports` and
`report_sources`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from services.reporter.queries import QUERIES
from services.reporter.versions import Decision, Outcome, Source, decide
from shared.reports.rendering import Rendered


@dataclass(frozen=True)
class Stored:
    """`version`: the incident's newest stored version after the store (not the rendering's when superseded)."""

    key: str
    severity: str
    version: int
    outcome: Outcome

    @property
    def new(self) -> bool:
        return self.outcome == "new"


def _stored_source(row: Mapping[str, Any]) -> Source | None:
    if row["incident_revision"] is None:
        return None
    return Source(row["incident_revision"], row["enrichment_version"])


async def store(
    conn: psycopg.AsyncConnection[Any], key: str, rendered: Mapping[str, Rendered], source: Source, *, state: str
) -> Stored | None:
    """Store `rendered`, made from `source`, as the next version as `versions.decide` rules; None: no such incident.
    `state`: the incident state the rendering shows, recorded with a new version (pruning keeps the one made at the
    resolve).

    One transaction, serialised per incident (advisory lock): the newest version is read, compared and extended under
    the lock, so two replicas rendering the same incident at once store one version, a redelivered event stores
    nothing, and a slow rendering of an older state than the newest version's stores nothing (superseded). The
    version's source and `report_sources` are written in the same transaction, so they always describe the newest
    version.
    """
    async with conn.transaction():
        incident = await (await conn.execute(QUERIES.incident_id_by_key, {"key": key})).fetchone()
        if incident is None:
            return None
        ids = {"incident_id": incident["id"]}
        await conn.execute(QUERIES.lock_incident_reports, ids)
        latest = await (await conn.execute(QUERIES.latest_reports, ids)).fetchall()
        decision: Decision = decide(
            latest[0]["version"] if latest else None,
            {row["format"]: row["sha256"] for row in latest},
            {fmt: r.sha256 for fmt, r in rendered.items()},
            latest_source=_stored_source(latest[0]) if latest else None,
            source=source,
        )
        columns = {
            **ids,
            "version": decision.version,
            "incident_revision": source.incident_revision,
            "enrichment_version": source.enrichment_version,
        }
        if decision.new:
            for fmt, r in rendered.items():
                await conn.execute(
                    QUERIES.insert_report,
                    {**columns, "format": fmt, "content": r.content, "sha256": r.sha256, "incident_state": state},
                )
        elif decision.records_source:
            await conn.execute(QUERIES.raise_report_source, columns)
        if decision.outcome != "superseded":
            await conn.execute(QUERIES.record_report_source, {**columns, "report_version": decision.version})
    return Stored(key=key, severity=incident["severity"], version=decision.version, outcome=decision.outcome)
