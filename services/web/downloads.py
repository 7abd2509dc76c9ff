"""Report downloads: the newest stored version from the `reports` table, or rendered on demand with the
reporter's library when the reporter has not stored one yet. Rendering runs in a thread, so a large
XLSX never blocks the event loop that serves everyone else."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.reporter import (
    audit,
    audit_markdown,
    audit_xlsx,
    incident_json,
    incident_markdown,
    incident_report,
    incident_xlsx,
    report_store,
)

CONTENT_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _render_incident(report: incident_report.IncidentReport, fmt: str) -> bytes:
    if fmt == "md":
        return incident_markdown.render(report).encode()
    if fmt == "xlsx":
        return incident_xlsx.render(report)
    return json.dumps(incident_json.render(report), ensure_ascii=False, indent=2, default=str).encode()


async def incident_file(
    pool: AsyncConnectionPool[Any], key: str, fmt: str, *, alertmanager_url: str = ""
) -> tuple[bytes, str] | None:
    """The report's bytes and where they came from (`stored v<N>` or `rendered`); None if there is no incident."""
    async with pool.connection() as conn:
        stored = await report_store.latest(conn, key, fmt)
        if stored is not None:
            return stored.content, f"stored v{stored.version}"
        report = await incident_report.load(conn, key, alertmanager_url=alertmanager_url)
    if report is None:
        return None
    content = await asyncio.get_running_loop().run_in_executor(None, _render_incident, report, fmt)
    return content, "rendered"


def _render_audit(report: audit.AuditReport, fmt: str) -> bytes:
    if fmt == "md":
        return audit_markdown.render(report).encode()
    out = io.BytesIO()
    audit_xlsx.write(report, out)
    return out.getvalue()


async def audit_file(pool: AsyncConnectionPool[Any], since: datetime, until: datetime, fmt: str) -> bytes:
    async with pool.connection() as conn:
        report = await audit.load(conn, since, until)
    return await asyncio.get_running_loop().run_in_executor(None, _render_audit, report, fmt)
