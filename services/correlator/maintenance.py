"""Maintenance windows in the correlator: which incidents are maintenance (pure, called by lifecycle for each new
alert occurrence), and the windows made through the web API, read from `maintenance_windows` once per batch.

An incident is maintenance while every alert occurrence it holds started inside a window: the one that opens it marks
it with that window's name, and an occurrence outside every window clears the mark for good (a real problem joined
it). An alert's time is its startsAt: when the problem began, not when the notification happened to arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from psycopg import AsyncConnection

from services.correlator.rules import RuleSet
from shared.db import Queries
from shared.maintenance import MaintenanceError, MaintenanceWindow, in_maintenance, parse_window

log = logging.getLogger(__name__)
Q = Queries(Path(__file__).with_name("maintenance.sql"))


class _Incident(Protocol):
    alert_count: int
    maintenance: str | None


def maintenance_after(
    windows: Iterable[MaintenanceWindow], inc: _Incident, labels: Mapping[str, str], starts_at: datetime
) -> str | None:
    """The incident's mark once a new occurrence (`labels`, `starts_at`) joins it; called before it is counted."""
    opening = inc.alert_count == 0
    if not opening and inc.maintenance is None:
        return None  # some alert of it was outside every window: it stays a real incident
    window = in_maintenance(windows, labels, starts_at)
    if window is None:
        return None
    return inc.maintenance if inc.maintenance is not None else window.name


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
