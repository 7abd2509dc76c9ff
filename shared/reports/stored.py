"""The newest stored report of an incident, as the reporter stored it (services/reporter/report_store.py writes
`reports`; the web serves what is there before rendering one itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from shared.db import Queries

QUERIES = Queries(Path(__file__).with_name("stored.sql"))


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
