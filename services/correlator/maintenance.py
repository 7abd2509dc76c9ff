"""The maintenance windows made through the web API, read from `maintenance_windows` once per batch and added to the
rules file's (which incident is maintenance is lifecycle.py's `maintenance_after`, pure)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from services.correlator.rules import RuleSet
from shared.db import Queries
from shared.maintenance import MaintenanceError, MaintenanceWindow, parse_window

log = logging.getLogger(__name__)
Q = Queries(Path(__file__).with_name("maintenance.sql"))


# Parsed definitions by row id: rows are never updated (the API creates and deletes), so an id's window never changes.
_parsed: dict[int, MaintenanceWindow | None] = {}


async def with_stored_windows(conn: AsyncConnection[Any], rules: RuleSet, since: datetime) -> RuleSet:
    """`rules` with the API's windows that may hold an alert started at or after `since` appended to the file's."""
    cur = await conn.execute(Q.maintenance_windows, {"since": since})
    stored = [w for row in await cur.fetchall() if (w := _window(row)) is not None]
    if not stored:
        return rules
    return replace(rules, maintenance=(*rules.maintenance, *stored))


def _window(row: dict[str, Any]) -> MaintenanceWindow | None:
    if row["id"] not in _parsed:
        try:
            _parsed[row["id"]] = parse_window(
                row["definition"], f"maintenance_windows id {row['id']}", window_id=row["id"]
            )
        except MaintenanceError as exc:
            # The web validates with the same parser; a row it could not have written is skipped, not fatal.
            log.warning("maintenance window skipped", extra={"error": str(exc)})
            _parsed[row["id"]] = None
    return _parsed[row["id"]]
