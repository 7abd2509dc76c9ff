"""Storing a rendered report set as the incident's next version, once: the only writer of `reports`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from services.reporter.queries import QUERIES
from services.reporter.versions import Decision, Rendered, decide


@dataclass(frozen=True)
class Stored:
    key: str
    severity: str
    version: int
    new: bool


async def store(conn: psycopg.AsyncConnection[Any], key: str, rendered: Mapping[str, Rendered]) -> Stored | None:
    """Store `rendered` as the next version unless the newest version holds the same bytes; None: no such incident.

    One transaction, serialised per incident (advisory lock), so two replicas rendering the same incident at once
    store one version, and a redelivered event stores nothing.
    """
    async with conn.transaction():
        incident = await (await conn.execute(QUERIES.incident_id_by_key, {"key": key})).fetchone()
        if incident is None:
            return None
        ids = {"incident_id": incident["id"]}
        await conn.execute(QUERIES.lock_incident_reports, ids)
        latest = await (await conn.execute(QUERIES.latest_reports, ids)).fetchall()
        latest_version = latest[0]["version"] if latest else None
        decision: Decision = decide(
            latest_version,
            {row["format"]: row["sha256"] for row in latest},
            {fmt: r.sha256 for fmt, r in rendered.items()},
        )
        if decision.new:
            for fmt, r in rendered.items():
                await conn.execute(
                    QUERIES.insert_report,
                    {**ids, "version": decision.version, "format": fmt, "content": r.content, "sha256": r.sha256},
                )
    return Stored(key=key, severity=incident["severity"], version=decision.version, new=decision.new)


@dataclass(frozen=True)
class StoredFile:
    version: int
    content: bytes
    sha256: str
    created_at: datetime


async def latest(conn: psycopg.AsyncConnection[Any], key: str, fmt: str) -> StoredFile | None:
    """The newest stored report of incident `key` in `fmt` (md, xlsx, json), or None when none is stored yet."""
    row = await (await conn.execute(QUERIES.latest_report_content, {"key": key, "format": fmt})).fetchone()
    if row is None:
        return None
    return StoredFile(row["version"], bytes(row["content"]), row["sha256"], row["created_at"])
