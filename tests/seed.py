"""Test data written straight into the schema, for tests of readers (enricher, reporter, web) that should
not depend on the correlator's behaviour. The correlator's own tests go through messages instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.fingerprint import label_fingerprint

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


async def insert_incident(
    conn: AsyncConnection[Any],
    *,
    number: int,
    title: str = "HostDown on web-1",
    state: str = "open",
    severity: str = "critical",
    hosts: tuple[str, ...] = ("web-1",),
    opened_at: datetime = T0,
    rule: str = "default",
    group_labels: dict[str, str] | None = None,
    acknowledged_at: datetime | None = None,
    resolved_at: datetime | None = None,
    flapping: bool = False,
) -> int:
    group_labels = group_labels if group_labels is not None else {"host": hosts[0] if hosts else ""}
    row = await (
        await conn.execute(
            """INSERT INTO incidents (key, rule, group_key, group_labels, title, state, announced, severity, hosts,
                   flapping, opened_at, first_alert_at, last_alert_at, acknowledged_at, acknowledged_by,
                   resolved_at, resolved_by)
               VALUES (%s, %s, %s, %s, %s, %s, true, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                f"INC-{number:06d}",
                rule,
                f"{rule}:{number}",
                Jsonb(group_labels),
                title,
                state,
                severity,
                list(hosts),
                flapping,
                opened_at,
                opened_at,
                opened_at,
                acknowledged_at,
                "alice" if acknowledged_at else None,
                resolved_at,
                "system" if resolved_at else None,
            ),
        )
    ).fetchone()
    assert row is not None
    incident_id = int(row["id"] if isinstance(row, dict) else row[0])
    await add_timeline(conn, incident_id, opened_at, "incident_opened", None, {"title": title})
    return incident_id


async def insert_alert(
    conn: AsyncConnection[Any],
    incident_id: int,
    *,
    alertname: str = "HostDown",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    status: str = "firing",
    severity: str = "critical",
    host: str = "web-1",
    generator_url: str = "",
) -> int:
    labels = {"alertname": alertname, "severity": severity, "instance": f"{host}:9100", **(labels or {})}
    row = await (
        await conn.execute(
            """INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, alertname, severity, host,
                   labels, annotations, generator_url, first_seen_at, last_seen_at, resolved_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                incident_id,
                label_fingerprint(labels),
                starts_at,
                ends_at,
                status,
                alertname,
                severity,
                host,
                Jsonb(labels),
                Jsonb(annotations or {}),
                generator_url,
                starts_at,
                starts_at + timedelta(minutes=1),
                ends_at if status == "resolved" else None,
            ),
        )
    ).fetchone()
    assert row is not None
    await conn.execute(
        """UPDATE incidents SET alert_count = alert_count + 1,
               firing_count = firing_count + (CASE WHEN %s = 'firing' THEN 1 ELSE 0 END),
               last_alert_at = GREATEST(last_alert_at, %s) WHERE id = %s""",
        (status, starts_at, incident_id),
    )
    await add_timeline(conn, incident_id, starts_at, "alert_added", None, {"alertname": alertname, "host": host})
    return int(row["id"] if isinstance(row, dict) else row[0])


async def add_timeline(
    conn: AsyncConnection[Any], incident_id: int, at: datetime, kind: str, actor: str | None, detail: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO incident_timeline (incident_id, at, kind, actor, detail) VALUES (%s, %s, %s, %s, %s)",
        (incident_id, at, kind, actor, Jsonb(detail)),
    )
