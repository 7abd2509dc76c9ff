"""A fixed incident for the reporter's tests: rows in the real schema (via tests/seed.py) plus an enrichment with a
realistic IncidentContext. Its Markdown is the golden file tests/reporter/golden/incident_report.md."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.incident_context import (
    ContextEvent,
    IncidentContext,
    LogBurst,
    LogLine,
    SecurityEvent,
    SeriesSummary,
    UpstreamStatus,
)
from tests.seed import T0, add_timeline, insert_alert, insert_incident

KEY = "INC-000042"
HOSTILE_TITLE = 'Disk | full\n# on <script>alert(\'x\')</script> & =HYPERLINK("http://evil","click")'


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def context(key: str = KEY) -> IncidentContext:
    cpu_points = [(minutes(m), round(20 + m * 1.5, 2)) for m in range(-10, 31, 5)]
    return IncidentContext(
        incident_key=key,
        window_start=minutes(-60),
        window_end=minutes(45),
        generated_at=minutes(46),
        complete=False,
        missing=["loki: security events query timed out after 10s"],
        upstreams=[
            UpstreamStatus(name="prometheus", ok=True, queries=3),
            UpstreamStatus(name="loki", ok=False, queries=3, failed=1, error="timeout"),
        ],
        metrics=[
            SeriesSummary(
                name="cpu",
                query='100 - avg(rate(node_cpu_seconds_total{mode="idle",instance=~"web-1:9100|web-2:9100"}[5m]))',
                labels={"instance": "web-1:9100"},
                unit="%",
                min=5.0,
                avg=41.25,
                max=65.0,
                p95=63.5,
                peak=65.0,
                peak_at=minutes(30),
                baseline=12.5,
                deviation_at=minutes(-4),
                points=cpu_points,
                bands=[(at, v - 0.5, v) for at, v in cpu_points],
            ),
            SeriesSummary(
                name="memory | rss",
                query="node_memory_Active_bytes",
                labels={"instance": "web-1:9100"},
                unit="bytes",
                min=1.5e9,
                avg=2.25e9,
                max=3.0e9,
                peak=3.0e9,
                peak_at=minutes(20),
                points=[(minutes(m), 1.5e9 + m * 5e7) for m in range(0, 31, 10)],
            ),
        ],
        logs=[
            LogLine(at=minutes(1), labels={"job": "nginx", "host": "web-1"}, line="GET /health 502 upstream timed out"),
            LogLine(at=minutes(2), labels={"job": "nginx", "host": "web-1"}, line="error: ```` <b>not html</b> | x"),
        ],
        log_lines_total=1234,
        error_bursts=[LogBurst(minute=minutes(1), errors=57), LogBurst(minute=minutes(2), errors=12)],
        security_events=[
            SecurityEvent(
                at=minutes(3), action="ban", ip="203.0.113.9", jail="sshd", host="web-1", line="Ban 203.0.113.9"
            )
        ],
        timeline=[
            ContextEvent(at=minutes(-4), kind="metric_deviation", title="cpu left baseline", detail={"value": 18.5}),
            ContextEvent(at=minutes(1), kind="log_burst", title="57 error lines", detail={"errors": 57}),
            ContextEvent(at=minutes(30), kind="metric_peak", title="cpu peak", detail={"value": 65.0}),
        ],
    )


async def seed_incident(conn: AsyncConnection[Any], *, number: int = 42, hostile: bool = False) -> int:
    """A resolved, acknowledged incident with three alerts, a comment and an enrichment; fixed times throughout."""
    title = HOSTILE_TITLE if hostile else "HostDown on web-1"
    incident_id = await insert_incident(
        conn,
        number=number,
        title=title,
        state="resolved",
        severity="critical",
        hosts=("web-1", "web-2"),
        acknowledged_at=minutes(7),
        resolved_at=minutes(42),
    )
    alertname = "Disk|Full\n<img src=x onerror=alert(1)>" if hostile else "HostDown"
    summary = '=HYPERLINK("http://evil","click")' if hostile else "web-1 is unreachable"
    await insert_alert(
        conn,
        incident_id,
        alertname=alertname,
        labels={"job": "node", "team": "ops|infra" if hostile else "ops"},
        annotations={
            "summary": summary,
            "description": "Target has been down for 5 minutes.\n- check the NIC\n# not a heading",
            "runbook_url": "https://runbooks.example/HostDown?x=1&y=(2)",
            "actions": "- Check power and network\n- Restart node_exporter",
        },
        starts_at=T0,
        ends_at=minutes(40),
        status="resolved",
        host="web-1",
        generator_url="http://prometheus.example/graph?g0.expr=up%3D%3D0",
    )
    await insert_alert(
        conn,
        incident_id,
        alertname="HighLatency",
        labels={"job": "nginx"},
        annotations={"summary": "+1 p99 latency above 2s" if hostile else "p99 latency above 2s"},
        starts_at=minutes(2),
        ends_at=minutes(41),
        status="resolved",
        severity="warning",
        host="web-2",
        generator_url="javascript:alert(1)" if hostile else "http://prometheus.example/graph?g0.expr=latency",
    )
    await insert_alert(
        conn,
        incident_id,
        alertname="HighLatency",
        labels={"job": "nginx", "path": "@SUM(1+1)" if hostile else "/api"},
        annotations={"summary": "-2+3" if hostile else "p99 latency above 2s"},
        starts_at=minutes(5),
        status="stale",
        severity="warning",
        host="web-1",
    )
    await add_timeline(conn, incident_id, minutes(7), "incident_acknowledged", "alice", {})
    await add_timeline(conn, incident_id, minutes(8), "comment", "alice", {"comment": "Power | cycle\nscheduled <now>"})
    await add_timeline(conn, incident_id, minutes(42), "incident_resolved", "system", {})
    await conn.execute(
        """INSERT INTO enrichments (incident_id, version, incident_revision, complete, context)
           VALUES (%s, 2, 1, %s, %s)""",
        (incident_id, False, Jsonb(context(f"INC-{number:06d}").model_dump(mode="json"))),
    )
    # `updated_at` defaults to now(): pin it, the report's "as of" time comes from it.
    await conn.execute("UPDATE incidents SET updated_at = %s, revision = 4 WHERE id = %s", (minutes(46), incident_id))
    return incident_id
