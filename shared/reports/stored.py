"""The newest stored reports of an incident, as the reporter stored them (services/reporter/report_store.py writes
`reports`; the web serves what is there before rendering one itself)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from shared.db import Queries

QUERIES = Queries(Path(__file__).with_name("stored.sql"))


@dataclass(frozen=True)
class Newest:
    """An incident's newest stored version: its `content` in the format asked for (None when the version has none,
    as for an XLSX, which the reporter does not store), and the sha256 of its JSON (None: stored before the JSON)."""

    version: int
    content: bytes | None
    json_sha256: str | None


async def newest(conn: psycopg.AsyncConnection[Any], key: str, fmt: str) -> Newest | None:
    """The newest stored version of incident `key`, with its file in `fmt` (md, xlsx, json); None when none is
    stored yet. Never an older version's file: once a version is stored, what an older one holds is out of date."""
    row = await (await conn.execute(QUERIES.newest_report, {"key": key, "format": fmt})).fetchone()
    if row is None:
        return None
    content = row["content"]
    return Newest(row["version"], None if content is None else bytes(content), row["json_sha256"])


async def content(conn: psycopg.AsyncConnection[Any], key: str, version: int, fmt: str) -> bytes | None:
    """Version `version` of incident `key` in `fmt`; None when it is not stored (any more: pruning removed it)."""
    params = {"key": key, "version": version, "format": fmt}
    row = await (await conn.execute(QUERIES.report_content, params)).fetchone()
    return None if row is None else bytes(row["content"])
