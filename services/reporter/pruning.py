"""Pruning of stored report versions: every rendering used to be kept, so a long storm stored hundreds of versions per
incident. The reporter, the only writer of `reports`, keeps per incident:

- the newest version: what the web serves (its XLSX rendered from its JSON, as the reporter stores none), and what a
  new rendering is compared with. An older version's files are never served, so an XLSX stored with one (before the
  reporter stopped storing them) goes like the rest of it;
- the version made at the resolve: the first version rendered from the resolved state in the newest run of such
  versions (the report that went out when the incident was last resolved; later ones add a late enrichment or a
  comment, and the newest of them is kept as the newest version anyway). An earlier resolve, undone by a reopen,
  is not kept;
- every version whose state is not known (stored before states were recorded, without a JSON rendering to read it
  from), and, since it may have been open or resolved, the first resolved version after it in that run: nothing says
  either is not the one made at the resolve.

The rule is `to_prune`, a pure function over the versions; the job below it is a shell that deletes in transactions
of at most `BATCH_ROWS` rows with a pause in between, one replica at a time (an advisory lock every transaction takes;
another replica holding it ends this pass), each incident under the lock that serialises the storing of its reports.
Incidents are looked at once they have a version newer than their last pruning (`report_sources.pruned_version`).
The correlator deletes all reports of an incident when retention deletes the incident.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from services.reporter.queries import QUERIES
from shared.db import Pool

log = logging.getLogger(__name__)

PRUNE_LOCK = 0x76696770  # "vigp": one replica prunes at a time
INTERVAL_S = 300.0
FIRST_PASS_AFTER_S = 60.0
BATCH_ROWS = 1000
# Incidents looked at per transaction.
CANDIDATES = 50
PAUSE_S = 0.2

RESOLVED = "resolved"

PRUNED = Counter("vigil_reports_pruned_total", "Stored report rows (one per version and format) deleted by pruning")
PRUNE_PASSES = Counter(
    "vigil_report_prune_passes_total",
    "Report pruning passes: done, busy (another replica was pruning) or failed (retried at the next pass)",
    ["outcome"],
)


# --- the rule ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredVersion:
    """One stored version: its formats, and the incident state it was rendered from (None: not known)."""

    version: int
    formats: frozenset[str]
    state: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredVersion:
        return cls(row["version"], frozenset(row["formats"]), row["state"])


def made_at_resolve(versions: Sequence[StoredVersion]) -> list[StoredVersion]:
    """The version made at the last resolve: the first of the newest run of versions rendered from the resolved
    state; none if no version was. Where that run holds versions of unknown state, each may have been open or
    resolved, so the first resolved version after each of them may be it too: all of these are returned."""
    ordered = sorted(versions, key=lambda v: v.version)
    end = max((i for i, v in enumerate(ordered) if v.state == RESOLVED), default=None)
    if end is None:
        return []
    start = end
    while start > 0 and ordered[start - 1].state in (RESOLVED, None):
        start -= 1
    found: list[StoredVersion] = []
    before: str | None = "" if start == 0 else ordered[start - 1].state
    for v in ordered[start : end + 1]:
        if v.state == RESOLVED and before != RESOLVED:
            found.append(v)
        before = v.state
    return found


def to_keep(versions: Sequence[StoredVersion]) -> set[tuple[int, str]]:
    # Versions of unknown state: nothing says either is not the one made at the resolve.
    kept = [v for v in versions if v.state is None] + made_at_resolve(versions)
    if versions:
        kept.append(max(versions, key=lambda v: v.version))
    return {(v.version, fmt) for v in kept for fmt in v.formats}


def to_prune(versions: Sequence[StoredVersion]) -> list[tuple[int, str]]:
    """The (version, format) rows that go, oldest first."""
    keep = to_keep(versions)
    return sorted((v.version, fmt) for v in versions for fmt in v.formats if (v.version, fmt) not in keep)


# --- the job ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    rows: int = 0
    incidents: int = 0
    done: bool = False
    busy: bool = False


@dataclass(frozen=True)
class PruneResult:
    """Rows deleted, incidents looked at; `complete`: the pass went through (False: another replica took over)."""

    rows: int
    incidents: int
    complete: bool


async def run_forever(pool: Pool, *, interval_s: float = INTERVAL_S, first_after_s: float = FIRST_PASS_AFTER_S) -> None:
    await asyncio.sleep(first_after_s)
    while True:
        try:
            await run_pass(pool)
        except asyncio.CancelledError:
            raise
        except Exception:
            PRUNE_PASSES.labels("failed").inc()
            log.exception("report pruning failed; will retry")
        await asyncio.sleep(interval_s)


async def run_pass(pool: Pool, *, batch_rows: int = BATCH_ROWS, pause_s: float = PAUSE_S) -> PruneResult:
    rows = incidents = 0
    while True:
        step = await _batch(pool, batch_rows)
        rows, incidents = rows + step.rows, incidents + step.incidents
        if step.busy:
            PRUNE_PASSES.labels("busy").inc()
            return PruneResult(rows, incidents, complete=False)
        if step.done:
            break
        await asyncio.sleep(pause_s)
    PRUNE_PASSES.labels("done").inc()
    if rows:
        log.info("report pruning pass done", extra={"rows": rows, "incidents": incidents})
    return PruneResult(rows, incidents, complete=True)


async def _batch(pool: Pool, budget: int) -> _Step:
    if budget < 1:
        raise ValueError("budget must be at least one row")
    rows = looked_at = 0
    async with pool.connection() as conn, conn.transaction():
        got = await (await conn.execute(QUERIES.try_prune_lock, {"key": PRUNE_LOCK})).fetchone()
        if got is None or not got["got"]:
            return _Step(busy=True)
        await conn.execute(QUERIES.prune_limits)
        cur = await conn.execute(QUERIES.unpruned_incidents, {"limit": CANDIDATES})
        ids = [r["incident_id"] for r in await cur.fetchall()]
        if not ids:
            return _Step(done=True)
        for incident_id in ids:
            looked_at += 1
            # The lock a store takes: no version is added while the incident's versions are read and pruned.
            await conn.execute(QUERIES.lock_incident_reports, {"incident_id": incident_id})
            cur = await conn.execute(QUERIES.report_versions, {"incident_id": incident_id})
            doomed = to_prune([StoredVersion.from_row(r) for r in await cur.fetchall()])
            going = doomed[: budget - rows]
            if going:
                await conn.execute(
                    QUERIES.delete_report_rows,
                    {"incident_id": incident_id, "versions": [v for v, _ in going], "formats": [f for _, f in going]},
                )
                rows += len(going)
            # An incident with more to prune than the budget left is looked at again by the next transaction.
            if len(going) == len(doomed):
                await conn.execute(QUERIES.mark_pruned, {"incident_id": incident_id})
            if rows >= budget:
                break
    PRUNED.inc(rows)
    log.debug("report versions pruned", extra={"rows": rows, "incidents": looked_at})
    return _Step(rows=rows, incidents=looked_at)
