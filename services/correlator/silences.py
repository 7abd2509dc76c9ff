"""Alertmanager's silences and inhibitions: polled, stored, and applied to the alerts Vigil has.

Alertmanager stops notifying an alert it silences or inhibits, so Vigil, which only hears notifications, would mark
it stale and auto-resolve its incident while the problem is still there. Every few seconds the correlator (the only
writer of incident state) asks each configured Alertmanager (`VIGIL_ALERTMANAGER_API_URLS`, every member of an HA
pair) for its alerts, suppressed ones included, and its silences; merges the answers; stores the silences; and
applies what changed through the pure core (`lifecycle.set_suppression`), matching alerts by Alertmanager's
fingerprint (which Vigil stores for webhook alerts).

A failed poll changes nothing: an unreachable Alertmanager must not unsilence anything. A suppression is believed only
while some Alertmanager answered within `lifecycle.SUPPRESSION_TRUST` (10 minutes); past that the sweeper's stale rule
applies to suppressed alerts too (`batches.sweep`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client import Counter

from services.correlator.batches import log_incident_changes
from services.correlator.lifecycle import (
    Silence,
    Suppression,
    coalesce_events,
    set_suppression,
)
from services.correlator.rules import RuleSet
from services.correlator.store import Q, dumps, lock_and_load, write_world
from shared.db import Pool

log = logging.getLogger(__name__)

POLLS = Counter(
    "vigil_correlator_alertmanager_polls_total", "Polls of an Alertmanager's API, by outcome (ok, failed)", ["outcome"]
)
SUPPRESSION_CHANGES = Counter(
    "vigil_correlator_suppression_changes_total", "Alerts whose silence or inhibition changed, by new state", ["state"]
)
POLL_LOCK = 0x7669676D  # "vigm": one poller at a time across replicas
FETCH_TIMEOUT_S = 10.0


@dataclass
class Observed:
    """The merged answer of the Alertmanagers that replied."""

    alerts: dict[str, Suppression] = field(default_factory=dict)  # fingerprint → what holds it back
    silences: dict[str, Silence] = field(default_factory=dict)
    silence_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # for the `silences` table
    answered: list[str] = field(default_factory=list)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def merge(observed: Observed, source: str, alerts: Sequence[Any], silences: Sequence[Any]) -> None:
    """Add one Alertmanager's `/api/v2/alerts` and `/api/v2/silences` answers. Members of an HA pair share silences
    (deduplicated by id) but may disagree for a moment on an alert: held back by any of them counts."""
    for a in alerts:
        if not isinstance(a, dict) or not isinstance(a.get("fingerprint"), str):
            continue
        raw_status = a.get("status")
        status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
        silenced = tuple(str(s) for s in status.get("silencedBy") or ())
        inhibited = tuple(str(s) for s in status.get("inhibitedBy") or ())
        before = observed.alerts.get(a["fingerprint"], Suppression())
        observed.alerts[a["fingerprint"]] = Suppression(
            tuple(sorted({*before.silenced_by, *silenced})), tuple(sorted({*before.inhibited_by, *inhibited}))
        )
    for s in silences:
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or s["id"] in observed.silences:
            continue
        starts, ends = _time(s.get("startsAt")), _time(s.get("endsAt"))
        if starts is None or ends is None:
            continue
        state = (s.get("status") or {}).get("state", "") if isinstance(s.get("status"), dict) else ""
        observed.silences[s["id"]] = Silence(s["id"], str(s.get("createdBy") or ""), str(s.get("comment") or ""), ends)
        observed.silence_rows[s["id"]] = {
            "id": s["id"],
            "matchers": s.get("matchers") or [],
            "starts_at": starts,
            "ends_at": ends,
            "created_by": str(s.get("createdBy") or ""),
            "comment": str(s.get("comment") or ""),
            "state": str(state),
            "source": source,
        }
    observed.answered.append(source)


async def fetch(http: aiohttp.ClientSession, urls: Sequence[str]) -> Observed | None:
    """Ask every Alertmanager; None when none answered (then nothing may change)."""
    observed = Observed()

    async def one(base: str) -> tuple[str, Any, Any]:
        root = base.rstrip("/")
        params = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
        async with http.get(f"{root}/api/v2/alerts", params=params) as resp:
            resp.raise_for_status()
            alerts = await resp.json()
        async with http.get(f"{root}/api/v2/silences") as resp:
            resp.raise_for_status()
            silences = await resp.json()
        return root, alerts, silences

    results = await asyncio.gather(*(one(u) for u in urls), return_exceptions=True)
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            POLLS.labels("failed").inc()
            log.warning("alertmanager poll failed", extra={"url": url, "error": repr(result)})
            continue
        POLLS.labels("ok").inc()
        root, alerts, silences = result
        merge(
            observed, root, alerts if isinstance(alerts, list) else [], silences if isinstance(silences, list) else []
        )
    return observed if observed.answered else None


def _differs(row: Mapping[str, Any], want: Suppression, silences: Mapping[str, Silence]) -> bool:
    if row["status"] == "stale" and want.state is not None:
        return True
    stored = (
        row["suppressed"],
        sorted(set(row["silenced_by"] or ())),
        sorted(set(row["inhibited_by"] or ())),
        row["suppressed_until"],
    )
    return stored != want.recorded(silences)


async def apply(pool: Pool, rules: RuleSet, observed: Observed, now: datetime, *, acknowledges: bool) -> list[int]:
    """Store the silences, apply the suppression changes; returns the outbox rows to publish after commit."""
    held = sorted(f for f, s in observed.alerts.items() if s.state is not None)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(Q.try_poll_lock, {"key": POLL_LOCK})
        row = await cur.fetchone()
        if not row or not row["got"]:
            return []
        if observed.silence_rows:
            await conn.execute(Q.upsert_silences, {"rows": dumps(list(observed.silence_rows.values()))})
        await conn.execute(Q.record_poll, {"at": now})
        cur = await conn.execute(Q.suppression_candidates, {"fps": held})
        candidates = [
            r
            for r in await cur.fetchall()
            if _differs(r, observed.alerts.get(r["fingerprint"], Suppression(present=False)), observed.silences)
        ]
        if not candidates:
            return []
        world = await lock_and_load(
            conn, rules, [(r["fingerprint"], r["starts_at"]) for r in candidates], {r["group_key"] for r in candidates}
        )
        for r in candidates:
            alert = world.alerts.get((r["fingerprint"], r["starts_at"]))
            if alert is None:
                continue
            want = observed.alerts.get(alert.fingerprint, Suppression(present=False))
            if set_suppression(world, alert, want, observed.silences, now, acknowledges=acknowledges):
                SUPPRESSION_CHANGES.labels(want.state or "none").inc()
        events = coalesce_events(world.events)
        outbox_ids = await write_world(conn, world, events)
    log_incident_changes(world, events)
    return outbox_ids


async def run_forever(
    pool: Pool,
    rules: RuleSet,
    urls: Sequence[str],
    *,
    interval_s: float,
    acknowledges: bool,
    submit: Callable[[list[int]], None],
) -> None:
    """Poll every `interval_s`; `submit` takes the outbox ids of each applied poll (AfterCommit.submit)."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            try:
                observed = await fetch(http, urls)
                if observed is not None:
                    submit(await apply(pool, rules, observed, datetime.now(UTC), acknowledges=acknowledges))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying alertmanager's suppressions failed; will retry")
            await asyncio.sleep(interval_s)
