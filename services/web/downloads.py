"""Report downloads: the newest version stored in the `reports` table, or rendered on demand with the report
library (shared.reports) when the reporter has not stored one yet. The reporter stores no XLSX: a version's workbook is
rendered from its stored JSON at its first download and kept for the next (xlsx_cache.py). Rendering runs in a thread,
so a large XLSX never blocks the event loop that serves everyone else.

Audit exports can be as large as a year of incidents. At most VIGIL_WEB_MAX_AUDIT_EXPORTS are built at once, each in a
thread of its own on a connection of its own (statement_timeout VIGIL_WEB_AUDIT_STATEMENT_TIMEOUT_MS): rows come from
server-side cursors a chunk at a time and are written to an unnamed temporary file as they come, which the handler then
streams to the client a chunk at a time. Memory stays flat however long the period; the connection is closed before
the first byte goes out, so a slow client holds a file, not the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import IO, Literal

from aiohttp import web

from services.web.xlsx_cache import CacheKey, XlsxCache
from shared.db import Pool, connect_sync
from shared.reports import (
    audit,
    audit_json,
    audit_markdown,
    audit_xlsx,
    incident_json,
    incident_markdown,
    incident_report,
    incident_xlsx,
    stored,
)
from shared.reports.rendering import RENDERED
from shared.reports.response_targets import NO_TARGETS, ResponseTargets

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
    pool: Pool, key: str, fmt: str, *, alertmanager_url: str = "", xlsx_cache: XlsxCache | None = None
) -> tuple[bytes, str] | None:
    """The report's bytes and where they came from; None if there is no incident.

    Always the newest stored version: its file (`stored v3`), or for the XLSX the reporter does not store, the one
    rendered from that version's JSON (`rendered from stored v3`; `rendered from stored v3 (cached)` when an earlier
    download rendered it). With no version stored yet, the incident as it is now (`rendered`).
    """
    document: bytes | None = None
    cache_key: CacheKey | None = None
    report: incident_report.IncidentReport | None = None
    async with pool.connection() as conn:
        newest = await stored.newest(conn, key, fmt)
        if newest is not None and newest.content is not None:
            return newest.content, f"stored v{newest.version}"
        if newest is not None and fmt == "xlsx" and newest.json_sha256 is not None:
            cache_key = (key, newest.version, newest.json_sha256)
            cached = xlsx_cache.get(cache_key) if xlsx_cache is not None else None
            if cached is not None:
                return cached, f"rendered from stored v{newest.version} (cached)"
            # None only if pruned since: a newer version was stored meanwhile, and the incident shows it.
            document = await stored.content(conn, key, newest.version, "json")
        if document is None:
            report = await incident_report.load(conn, key, alertmanager_url=alertmanager_url)
    loop = asyncio.get_running_loop()
    if document is not None and cache_key is not None:
        content = await loop.run_in_executor(None, incident_xlsx.render_stored_json, document)
        RENDERED.labels("xlsx").inc()
        if xlsx_cache is not None:
            xlsx_cache.put(cache_key, content)
        return content, f"rendered from stored v{cache_key[1]}"
    if report is None:
        return None
    content = await loop.run_in_executor(None, _render_incident, report, fmt)
    RENDERED.labels(fmt).inc()
    return content, "rendered"


AuditFormat = Literal["md", "xlsx", "json"]
# What the client is sent per write: a few round trips per megabyte, nothing in memory.
STREAM_CHUNK = 256 * 1024


class ExportsBusy(Exception):
    """Every audit export slot is taken."""


def build_audit(
    url: str,
    statement_timeout_ms: int,
    since: datetime,
    until: datetime,
    fmt: AuditFormat,
    targets: ResponseTargets = NO_TARGETS,
) -> IO[bytes]:
    """The audit of [since, until) in an unnamed temporary file, positioned at its start. Blocking: run in a thread."""
    out = tempfile.TemporaryFile()  # handed to the caller, who closes it
    try:
        with (
            connect_sync(url, statement_timeout_ms=statement_timeout_ms) as conn,
            audit.reading(conn, since, until, targets) as report,
        ):
            if fmt == "md":
                audit_markdown.write(report, out)
            elif fmt == "json":
                audit_json.write(report, out)
            else:
                audit_xlsx.write(report, out)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


class AuditExports:
    """At most `limit` audit exports at a time; the next is refused at once (ExportsBusy) rather than queued."""

    def __init__(self, url: str, limit: int, statement_timeout_ms: int, targets: ResponseTargets = NO_TARGETS) -> None:
        self.url = url
        self.targets = targets  # VIGIL_RESPONSE_TARGETS_FILE, loaded (and checked) when the web started
        self.limit = limit
        self.statement_timeout_ms = statement_timeout_ms
        self.running = 0
        self._threads = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="audit-export")

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Held from the first query to the last byte sent: a slot is a temporary file and, while building, a
        connection and a thread."""
        if self.running >= self.limit:
            raise ExportsBusy
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    async def build(self, since: datetime, until: datetime, fmt: AuditFormat) -> IO[bytes]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, build_audit, self.url, self.statement_timeout_ms, since, until, fmt, self.targets
        )

    def close(self) -> None:
        # An export still building finishes in its thread (each statement is bounded by the timeout); nothing waits.
        self._threads.shutdown(wait=False, cancel_futures=True)


async def stream_file(request: web.Request, file: IO[bytes], headers: dict[str, str]) -> web.StreamResponse:
    """Send `file` from where it stands to its end, a chunk at a time (file reads in a thread)."""
    response = web.StreamResponse(headers=headers)
    response.content_length = os.fstat(file.fileno()).st_size - file.tell()
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    while chunk := await loop.run_in_executor(None, file.read, STREAM_CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


AUDIT_EXPORTS = web.AppKey("audit_exports", AuditExports)
XLSX_CACHE = web.AppKey("xlsx_cache", XlsxCache)
RESPONSE_TARGETS = web.AppKey("response_targets", ResponseTargets)
