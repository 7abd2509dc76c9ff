"""Retention: resolved incidents are deleted with every row under them `VIGIL_RETENTION_DAYS` after they resolved,
published outbox rows and processed-message ids after `VIGIL_MESSAGE_RETENTION_DAYS`. Unresolved incidents and
unpublished events are never deleted.

The rules (which rows go) are the pure functions at the top, over plain rows. The job below them is a shell: it reads
candidates, asks the rules, and deletes in transactions of at most `BATCH_ROWS` rows with a pause in between, one
replica at a time (an advisory lock taken by every transaction; another replica holding it ends this pass).

An incident and its rows go in one transaction, so no one ever sees half an incident; only an incident with more
rows than a transaction takes (a storm's incident) loses them over several, its own row last. Each transaction takes
the incident's group lock, the one the correlator's batches take, without waiting (a busy group waits for the next
pass), and reads the incident again under it: an incident reopened meanwhile (a person may reopen any incident) is
not deleted.

Audits stay complete inside retention: an incident is deleted only when it resolved *and opened* before the cut-off,
and the audit of a period lists the incidents opened in it. The cut-off comes from the database's clock, as the
audit's `as_of` does, and is recorded (`retention_horizon`) in the transaction that deletes, so an audit says from
when its period is complete.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from psycopg import AsyncConnection

from services.correlator.store import Q, group_lock_id
from shared.config import Settings
from shared.db import Pool

log = logging.getLogger(__name__)

RETENTION_LOCK = 0x76696772  # "vigr": one replica deletes at a time
INTERVAL_S = 600.0
FIRST_PASS_AFTER_S = 60.0
# Rows one transaction deletes at most: milliseconds of work, so a group lock is held no longer than a batch holds it.
BATCH_ROWS = 1000
# Expired incidents read per transaction.
CANDIDATES = 100
PAUSE_S = 0.2

RESOLVED = "resolved"
# Under an incident, deleted in this order before the incident's own row (all of them reference only `incidents`).
CHILD_TABLES = ("incident_timeline", "enrichments", "report_sources", "reports", "incident_signature_tokens", "alerts")
DELETE_CHILDREN = {
    "incident_timeline": Q.delete_incident_timeline,
    "incident_signature_tokens": Q.delete_signature_tokens,
    "enrichments": Q.delete_enrichments,
    "report_sources": Q.delete_report_sources,
    "reports": Q.delete_reports,
    "alerts": Q.delete_alerts,
}

DELETED = Counter("vigil_retention_deleted_rows_total", "Rows deleted by retention, by table", ["table"])
PASSES = Counter(
    "vigil_retention_passes_total",
    "Retention passes: done, busy (another replica was deleting) or failed (retried at the next pass)",
    ["outcome"],
)
LAST_PASS = Gauge("vigil_retention_last_pass_timestamp_seconds", "When the last complete retention pass ended")


# --- rules ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    incidents: timedelta
    messages: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(timedelta(days=settings.retention_days), timedelta(days=settings.message_retention_days))


@dataclass(frozen=True)
class Cutoffs:
    incidents: datetime
    messages: datetime


def cutoffs(now: datetime, policy: Policy) -> Cutoffs:
    return Cutoffs(incidents=now - policy.incidents, messages=now - policy.messages)


@dataclass(frozen=True)
class IncidentRow:
    id: int
    key: str
    group_key: str
    state: str
    opened_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> IncidentRow:
        return cls(row["id"], row["key"], row["group_key"], row["state"], row["opened_at"], row["resolved_at"])


def expired(incident: IncidentRow, cutoff: datetime) -> bool:
    """Whether the incident goes: resolved before `cutoff`, and opened before it too. Times come from senders' and
    people's clocks, so an incident may say it resolved before it opened; requiring both keeps every incident an
    audit of a period after `cutoff` lists (the incidents opened in it)."""
    return (
        incident.state == RESOLVED
        and incident.resolved_at is not None
        and incident.resolved_at < cutoff
        and incident.opened_at < cutoff
    )


@dataclass(frozen=True)
class Plan:
    """`whole`: incidents deleted with all their rows in this transaction. `partial`: an incident with more rows than
    one transaction takes: `budget` of its rows go now, the rest (and it) in the next ones."""

    whole: tuple[int, ...] = ()
    partial: int | None = None


def plan(sizes: Sequence[tuple[int, int]], budget: int) -> Plan:
    """Which of the expired incidents (id, rows under it), oldest first, this transaction deletes within `budget`
    rows, each incident's own row counting one. Oldest first and no skipping ahead, so a big incident is not
    overtaken forever by small ones."""
    if budget < 1:
        raise ValueError("budget must be at least one row")
    whole: list[int] = []
    used = 0
    for incident_id, rows in sizes:
        if used + rows + 1 > budget:
            break
        whole.append(incident_id)
        used += rows + 1
    if whole:
        return Plan(whole=tuple(whole))
    return Plan(partial=sizes[0][0]) if sizes else Plan()


@dataclass(frozen=True)
class OutboxRow:
    id: int
    created_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class OutboxStep:
    """`delete`: ids that go; `after`: where the next read starts; `done`: nothing further can be old enough."""

    delete: tuple[int, ...]
    after: int
    done: bool


def outbox_step(rows: Sequence[OutboxRow], cutoff: datetime, *, after: int, limit: int) -> OutboxStep:
    """Of rows read in id order from `after` on (at most `limit`), those published before `cutoff`. An unpublished
    row stays whatever its age: it is an event not delivered yet. Rows are read in the order they were written, and
    none is published before it was written, so the first row written at or after `cutoff` ends the walk."""
    delete: list[int] = []
    for row in rows:
        if row.created_at >= cutoff:
            return OutboxStep(tuple(delete), after, done=True)
        if row.published_at is not None and row.published_at < cutoff:
            delete.append(row.id)
        after = row.id
    return OutboxStep(tuple(delete), after, done=len(rows) < limit)


@dataclass(frozen=True)
class ProcessedRow:
    consumer: str
    message_id: uuid.UUID
    processed_at: datetime


def processed_to_delete(rows: Sequence[ProcessedRow], cutoff: datetime) -> list[tuple[str, uuid.UUID]]:
    """Processed-message ids older than `cutoff`: a redelivery that old is no longer expected (retries take
    minutes; a parked message brought back later than that is applied again)."""
    return [(r.consumer, r.message_id) for r in rows if r.processed_at < cutoff]


# --- the job ----------------------------------------------------------------------------------------------------


@dataclass
class PassResult:
    """What a pass deleted, per table; `complete`: it went through (False: another replica took over)."""

    deleted: Tally[str] = field(default_factory=Tally)
    complete: bool = True


@dataclass
class _Step:
    deleted: Tally[str] = field(default_factory=Tally)
    done: bool = False
    busy: bool = False


async def run_forever(
    pool: Pool,
    policy: Policy,
    *,
    interval_s: float = INTERVAL_S,
    first_after_s: float = FIRST_PASS_AFTER_S,
) -> None:
    await asyncio.sleep(first_after_s)
    while True:
        try:
            await run_pass(pool, policy)
        except asyncio.CancelledError:
            raise
        except Exception:
            PASSES.labels("failed").inc()
            log.exception("retention pass failed; will retry")
        await asyncio.sleep(interval_s)


async def run_pass(pool: Pool, policy: Policy, *, batch_rows: int = BATCH_ROWS, pause_s: float = PAUSE_S) -> PassResult:
    """One pass: expired incidents, then the outbox, processed-message ids and long-ended silences, batch by batch."""
    async with pool.connection() as conn, conn.transaction():
        row = await (await conn.execute(Q.retention_now)).fetchone()
    if row is None:
        raise RuntimeError("SELECT now() returned no row")
    cut = cutoffs(row["now"], policy)
    result = PassResult()
    phases: tuple[Callable[[], Awaitable[_Step]], ...] = (
        lambda: _incident_batch(pool, cut.incidents, batch_rows),
        _OutboxWalk(pool, cut.messages, batch_rows),
        lambda: _processed_batch(pool, cut.messages, batch_rows),
        lambda: _silences_batch(pool, cut.incidents, batch_rows),
    )
    for next_batch in phases:
        while True:
            step = await next_batch()
            result.deleted.update(step.deleted)
            if step.busy:
                PASSES.labels("busy").inc()
                result.complete = False
                return result
            if step.done:
                break
            await asyncio.sleep(pause_s)
    PASSES.labels("done").inc()
    LAST_PASS.set_to_current_time()
    if result.deleted:
        log.info(
            "retention pass deleted rows",
            extra={
                "rows": dict(result.deleted),
                "incidents_before": cut.incidents.isoformat(),
                "messages_before": cut.messages.isoformat(),
            },
        )
    return result


async def _locked(conn: AsyncConnection[Any]) -> bool:
    row = await (await conn.execute(Q.try_retention_lock, {"key": RETENTION_LOCK})).fetchone()
    if row is None or not row["got"]:
        return False
    await conn.execute(Q.retention_limits)
    return True


def _count(step: _Step) -> _Step:
    """After the commit: what the step deleted is counted once it is really gone."""
    for table, n in step.deleted.items():
        DELETED.labels(table).inc(n)
    return step


async def _incident_batch(pool: Pool, cutoff: datetime, budget: int) -> _Step:
    deleted: Tally[str] = Tally()
    async with pool.connection() as conn, conn.transaction():
        if not await _locked(conn):
            return _Step(busy=True)
        cur = await conn.execute(Q.expired_incident_candidates, {"cutoff": cutoff, "limit": CANDIDATES})
        candidates = [c for c in map(IncidentRow.from_row, await cur.fetchall()) if expired(c, cutoff)]
        if not candidates:
            return _Step(done=True)
        by_lock = {group_lock_id(c.group_key): c.group_key for c in candidates}
        cur = await conn.execute(Q.try_group_locks, {"keys": sorted(by_lock)})
        free = {by_lock[r["lock_id"]] for r in await cur.fetchall() if r["got"]}
        ids = [c.id for c in candidates if c.group_key in free]
        if not ids:
            log.info("retention leaves incidents of busy groups to the next pass", extra={"count": len(candidates)})
            return _Step(done=True)
        # Again under the group locks: a batch may have reopened one since the read above.
        cur = await conn.execute(Q.incidents_for_retention, {"ids": ids})
        fresh = {i.id: i for i in map(IncidentRow.from_row, await cur.fetchall()) if expired(i, cutoff)}
        going = [i for i in ids if i in fresh]
        if not going:
            return _Step()
        cur = await conn.execute(Q.incident_row_counts, {"ids": going})
        rows = {r["id"]: r["rows"] for r in await cur.fetchall()}
        chosen = plan([(i, rows[i]) for i in going], budget)
        if chosen.whole:
            targets = list(chosen.whole)
        elif chosen.partial is not None:
            targets = [chosen.partial]
        else:  # plan() always chooses something from a non-empty list; nothing to do otherwise
            return _Step()
        left = budget
        for table in CHILD_TABLES:
            # The rows of whole incidents fit in the budget, so only a partial one's are cut short by it.
            cur = await conn.execute(DELETE_CHILDREN[table], {"ids": targets, "limit": left})
            if cur.rowcount:
                deleted[table] += cur.rowcount
            left -= cur.rowcount
            if left <= 0:
                break
        keys: list[str] = []
        if chosen.whole:
            cur = await conn.execute(Q.delete_incidents, {"ids": targets})
            keys = [r["key"] for r in await cur.fetchall()]
            deleted["incidents"] += len(keys)
        await conn.execute(Q.record_retention_horizon, {"cutoff": cutoff})
    if keys:
        log.info(
            "retention deleted incidents",
            extra={"incidents": keys, "rows": dict(deleted), "resolved_before": cutoff.isoformat()},
        )
    else:
        partial = fresh[targets[0]]
        log.info(
            "retention deleting a large incident",
            extra={"key": partial.key, "rows": dict(deleted), "rows_left": rows[partial.id] - sum(deleted.values())},
        )
    return _count(_Step(deleted))


class _OutboxWalk:
    """Batches over the outbox, each starting where the previous one stopped."""

    def __init__(self, pool: Pool, cutoff: datetime, budget: int) -> None:
        self.pool, self.cutoff, self.budget = pool, cutoff, budget
        self.after = 0

    async def __call__(self) -> _Step:
        async with self.pool.connection() as conn, conn.transaction():
            if not await _locked(conn):
                return _Step(busy=True)
            cur = await conn.execute(Q.outbox_oldest, {"after": self.after, "limit": self.budget})
            rows = [OutboxRow(r["id"], r["created_at"], r["published_at"]) for r in await cur.fetchall()]
            step = outbox_step(rows, self.cutoff, after=self.after, limit=self.budget)
            n = (await conn.execute(Q.delete_outbox, {"ids": list(step.delete)})).rowcount if step.delete else 0
        self.after = step.after
        return _count(_Step(Tally({"outbox": n}) if n else Tally(), done=step.done))


async def _processed_batch(pool: Pool, cutoff: datetime, budget: int) -> _Step:
    async with pool.connection() as conn, conn.transaction():
        if not await _locked(conn):
            return _Step(busy=True)
        cur = await conn.execute(Q.processed_oldest, {"cutoff": cutoff, "limit": budget})
        rows = [ProcessedRow(r["consumer"], r["message_id"], r["processed_at"]) for r in await cur.fetchall()]
        doomed = processed_to_delete(rows, cutoff)
        n = 0
        if doomed:
            params = {"consumers": [c for c, _ in doomed], "ids": [m for _, m in doomed]}
            n = (await conn.execute(Q.delete_processed, params)).rowcount
    return _count(_Step(Tally({"processed_messages": n}) if n else Tally(), done=len(rows) < budget))


async def _silences_batch(pool: Pool, cutoff: datetime, budget: int) -> _Step:
    """Silences that ended before the incident horizon: every alert they held back has been deleted with its incident
    (or resolved long ago), so nothing shows them any more."""
    async with pool.connection() as conn, conn.transaction():
        n = (await conn.execute(Q.delete_ended_silences, {"cutoff": cutoff, "limit": budget})).rowcount
    return _count(_Step(Tally({"silences": n}) if n else Tally(), done=n < budget))
