"""The correlator's database side: lock the groups a batch touches, load them into a `World`, and write
back what the pure core changed (incidents, alerts, timeline, outbox) in the same transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from psycopg import AsyncConnection

from services.correlator.lifecycle import EventOut, Incident, StoredAlert, World
from services.correlator.rules import RuleSet
from shared.contracts import (
    ENRICHED_AT_ONCE,
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentEventType,
    asks_for_enrichment,
    incident_routing_key,
)
from shared.db import Queries
from shared.messaging.topology import ENRICH_ROUTING_KEY, WORK_EXCHANGE

Q = Queries(Path(__file__).with_name("queries.sql"))
PRODUCER = "correlator"
# A standing enrichment request older than this is asked again: its message was parked or purged, and the incident
# would otherwise wait for its next opening, reopening or resolve.
ENRICHMENT_REQUEST_RENEW_S = 300
SWEEP_LOCK = 0x76696773  # "vigs": one sweeper at a time across replicas


IncidentEnvelope = Envelope[IncidentEvent]


def group_lock_id(gkey: str) -> int:
    """A stable signed 64-bit lock id per group (hashtext is only 32 bits: more collisions)."""
    return int.from_bytes(hashlib.blake2b(gkey.encode(), digest_size=8).digest(), "big", signed=True)


def dumps(rows: object) -> str:
    """The batch's rows as one JSON array for `jsonb_to_recordset` (orjson writes datetimes and UUIDs itself)."""
    return orjson.dumps(rows).decode()


def lock_ids(group_keys: Iterable[str]) -> list[int]:
    return sorted({group_lock_id(g) for g in group_keys})


async def lock_and_load(
    conn: AsyncConnection[Any],
    rules: RuleSet,
    alert_keys: Iterable[tuple[str, datetime]],
    group_keys: Iterable[str],
    incident_ids: Iterable[int] = (),
    odd_fingerprints: Iterable[str] = (),
) -> World:
    """Lock the groups, then load their state: one round trip (pipelined), reads after the locks.

    An alert's incident normally is in the alert's group; after a rules change it may not be. Then that
    incident's group is locked too and everything is read again, so no incident changes without its lock.
    `odd_fingerprints`: alerts sent with an impossible startsAt, whose newest occurrence (which they may repeat)
    is loaded with its incident.
    """
    keys = list(dict.fromkeys(alert_keys))
    incident_ids = sorted(set(incident_ids))
    odd = sorted(set(odd_fingerprints))
    locked: set[str] = set()
    wanted = set(group_keys)
    while True:
        world = await _load(conn, rules, keys, sorted(wanted - locked), sorted(wanted), incident_ids, odd)
        locked |= wanted
        extra = {inc.group_key for inc in world.incidents.values()} - locked
        if not extra:
            return world
        wanted |= extra


async def _load(
    conn: AsyncConnection[Any],
    rules: RuleSet,
    keys: list[tuple[str, datetime]],
    to_lock: list[str],
    groups: list[str],
    incident_ids: list[int],
    odd_fps: list[str],
) -> World:
    world = World(rules)
    params = {
        "keys": dumps([{"fp": fp, "s": starts_at} for fp, starts_at in keys]),
        "ids": incident_ids,
        "groups": groups,
        "odd_fps": odd_fps,
    }
    async with conn.pipeline():
        if to_lock:
            await conn.execute(Q.lock_groups, {"keys": lock_ids(to_lock)})
        alerts_cur = await conn.execute(Q.load_alerts, params) if keys else None
        incidents_cur = await conn.execute(Q.load_incidents, params)
        alert_rows = await alerts_cur.fetchall() if alerts_cur is not None else []
        incident_rows = await incidents_cur.fetchall()
    for row in incident_rows:
        if row["id"] not in world.incidents:
            world.add_incident(incident_from_row(row), current=False)
    # The current incident of a group: the unresolved one, else the newest.
    for inc in sorted(world.incidents.values(), key=lambda i: (i.state != "resolved", i.id)):
        world.current[inc.group_key] = inc.id
    odd = set(odd_fps)
    for row in alert_rows:
        alert = alert_from_row(row)
        if (row["exact"] or alert.fingerprint in odd) and alert.incident_id in world.incidents:
            world.add_alert(alert)
        else:
            newest = world.latest.get(alert.fingerprint)
            if newest is None or newest.starts_at < alert.starts_at:
                world.latest[alert.fingerprint] = alert
    return world


def alert_from_row(row: dict[str, Any]) -> StoredAlert:
    return StoredAlert(
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        status=row["status"],
        incident_id=row["incident_id"],
        alertname=row["alertname"],
        severity=row["severity"],
        host=row["host"],
        labels=row.get("labels") or {},
        annotations=row.get("annotations") or {},
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        ends_at=row["ends_at"],
        resolved_at=row["resolved_at"],
        generator_url=row["generator_url"],
        source=row["source"],
        sender=row["sender"],
        receiver=row["receiver"],
        sent_starts_at=row.get("sent_starts_at"),
        suppressed=row.get("suppressed"),
        silenced_by=list(row.get("silenced_by") or ()),
        inhibited_by=list(row.get("inhibited_by") or ()),
        suppressed_until=row.get("suppressed_until"),
    )


def incident_from_row(row: dict[str, Any]) -> Incident:
    return Incident(
        id=row["id"],
        key=row["key"],
        rule=row["rule"],
        group_key=row["group_key"],
        group_labels=row["group_labels"],
        title=row["title"],
        state=row["state"],
        opened_at=row["opened_at"],
        first_alert_at=row["first_alert_at"],
        last_alert_at=row["last_alert_at"],
        last_seen_at=row["last_seen_at"] or row["last_alert_at"],
        announced=row["announced"],
        severity=row["severity"],
        hosts=list(row["hosts"]),
        flapping=row["flapping"],
        flap_times=list(row["flap_times"]),
        revision=row["revision"],
        alert_count=row["alert_count"],
        firing_count=row["firing_count"],
        firing_severities=dict(row["firing_severities"]),
        min_alerts=row["min_alerts"],
        quiet_since=row["quiet_since"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        maintenance=row.get("maintenance"),
    )


def _incident_row(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "key": inc.key,
        "rule": inc.rule,
        "group_key": inc.group_key,
        "group_labels": inc.group_labels,
        "title": inc.title,
        "state": str(inc.state),
        "announced": inc.announced,
        "severity": inc.severity,
        "hosts": inc.hosts,
        "flapping": inc.flapping,
        "flap_times": inc.flap_times,
        "revision": inc.revision,
        "alert_count": inc.alert_count,
        "firing_count": inc.firing_count,
        "firing_severities": inc.firing_severities,
        "min_alerts": inc.min_alerts,
        "opened_at": inc.opened_at,
        "first_alert_at": inc.first_alert_at,
        "last_alert_at": inc.last_alert_at,
        "last_seen_at": inc.last_seen_at,
        "quiet_since": inc.quiet_since,
        "acknowledged_at": inc.acknowledged_at,
        "acknowledged_by": inc.acknowledged_by,
        "resolved_at": inc.resolved_at,
        "resolved_by": inc.resolved_by,
        "maintenance": inc.maintenance,
    }


def _alert_row(alert: StoredAlert, ids: dict[int, int], notified: int) -> dict[str, Any]:
    return {
        "incident_id": ids.get(alert.incident_id, alert.incident_id),
        "notifications": notified,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "status": alert.status,
        "alertname": alert.alertname,
        "severity": alert.severity,
        "host": alert.host,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "source": alert.source,
        "sender": alert.sender,
        "receiver": alert.receiver,
        "first_seen_at": alert.first_seen_at,
        "last_seen_at": alert.last_seen_at,
        "resolved_at": alert.resolved_at,
        "adjustments": alert.adjustments,
        "suppressed": alert.suppressed,
        "silenced_by": alert.silenced_by,
        "inhibited_by": alert.inhibited_by,
        "suppressed_until": alert.suppressed_until,
    }


def incident_key(number: int) -> str:
    return f"INC-{number:06d}"


async def write_world(conn: AsyncConnection[Any], world: World, events: list[EventOut]) -> list[int]:
    """Persist the batch's changes; returns the ids of the outbox rows to publish after commit."""
    dirty = [world.incidents[i] for i in sorted(world.dirty_incidents)]
    new = [inc for inc in dirty if inc.id < 0]
    existing = [inc for inc in dirty if inc.id > 0]
    ids: dict[int, int] = {}
    if new:
        cur = await conn.execute(Q.next_incident_numbers, {"count": len(new)})
        numbers = sorted(r["n"] for r in await cur.fetchall())
        for inc, number in zip(new, numbers, strict=True):
            inc.key = incident_key(number)
        async with conn.pipeline():
            # Existing ones first: one may be resolved to make room for a new one of its group (unique index).
            if existing:
                await conn.execute(Q.update_incidents, {"rows": dumps([_incident_row(i) for i in existing])})
            cur = await conn.execute(Q.insert_incidents, {"rows": dumps([_incident_row(i) for i in new])})
            by_key = {r["key"]: r["id"] for r in await cur.fetchall()}
        for inc in new:
            ids[inc.id] = by_key[inc.key]
        existing = []
    outbox_rows, requests = _outbox_rows(world, events, ids)
    # Repeats (only last_seen_at moved) and notifications that changed nothing but the count.
    refresh = [
        a
        for k, a in {**world.seen_alerts, **{k: world.alerts[k] for k in world.notified}}.items()
        if k not in world.dirty_alerts
    ]
    async with conn.pipeline():
        if existing:
            await conn.execute(Q.update_incidents, {"rows": dumps([_incident_row(i) for i in existing])})
        if world.dirty_alerts:
            rows = [_alert_row(a, ids, world.notified.get(k, 0)) for k, a in world.dirty_alerts.items()]
            await conn.execute(Q.upsert_alerts, {"rows": dumps(rows)})
        if refresh:
            await conn.execute(
                Q.refresh_alerts,
                {
                    "fps": [a.fingerprint for a in refresh],
                    "starts": [a.starts_at for a in refresh],
                    "seen": [a.last_seen_at for a in refresh],
                    "notified": [world.notified.get(a.key, 0) for a in refresh],
                },
            )
        if world.timeline:
            rows = [
                {
                    "incident_id": ids.get(t.incident_id, t.incident_id),
                    "at": t.at,
                    "kind": t.kind,
                    "actor": t.actor,
                    "detail": t.detail,
                }
                for t in world.timeline
            ]
            await conn.execute(Q.insert_timeline, {"rows": dumps(rows)})
        if (signature := signature_params(world, events, ids)) is not None:
            await conn.execute(Q.add_signature_tokens, signature)
        if not outbox_rows:
            return []
        cur = await conn.execute(Q.insert_outbox, {"rows": dumps(outbox_rows)})
        if requests:
            asked = await conn.execute(
                Q.request_enrichment,
                {
                    "incident_ids": list(requests),
                    "event_ids": [r["event_id"] for r in requests.values()],
                    "at_once": [i for i, r in requests.items() if r["at_once"]],
                    "renew_after_s": ENRICHMENT_REQUEST_RENEW_S,
                    "exchange": WORK_EXCHANGE,
                    "routing_key": ENRICH_ROUTING_KEY,
                },
            )
        outbox_ids = [r["id"] for r in await cur.fetchall()]
        if requests:
            outbox_ids += [r["id"] for r in await asked.fetchall()]
        return outbox_ids


def signature_params(world: World, events: list[EventOut], ids: dict[int, int]) -> dict[str, list[Any]] | None:
    """What `add_signature_tokens` needs of the batch, or None when it adds to no signature: the incidents the batch
    announced (an `incident.opened` event is exactly an announcement), and one (incident, alert name) pair per name
    among its alerts of incidents announced before. One statement per batch, in the batch's pipeline; alerts of
    incidents still held back add nothing (their names are read at the announcement)."""
    announced = {ev.incident_id for ev in events if ev.event == IncidentEventType.opened}
    pairs = sorted(
        {
            (ids.get(alert.incident_id, alert.incident_id), alert.alertname)
            for alert in world.dirty_alerts.values()
            if alert.incident_id not in announced
            and (inc := world.incidents.get(alert.incident_id)) is not None
            and inc.announced
        }
    )
    if not announced and not pairs:
        return None
    return {
        "announced": sorted(ids.get(i, i) for i in announced),
        "incident_ids": [incident_id for incident_id, _ in pairs],
        "alertnames": [alertname for _, alertname in pairs],
    }


def _outbox_rows(
    world: World, events: list[EventOut], ids: dict[int, int]
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """The batch's incident events as outbox rows, and per incident whose events ask for an enrichment, what
    `request_enrichment` needs: the id of its last such event, and whether it is enriched at once."""
    keys = {inc.id: inc.key for inc in world.incidents.values()}
    rows = []
    requests: dict[int, dict[str, Any]] = {}
    for ev in events:
        snapshot = ev.snapshot if ev.snapshot.key else ev.snapshot.model_copy(update={"key": keys[ev.incident_id]})
        envelope = IncidentEnvelope(
            type=ev.event.value,
            producer=PRODUCER,
            data=IncidentEvent(incident=snapshot, change=ev.change, actor=ev.actor, detail=ev.detail),
        )
        rows.append(
            {
                "message_id": envelope.id,
                "exchange": INCIDENTS_EXCHANGE,
                "routing_key": incident_routing_key(ev.event, snapshot.severity),
                "body": envelope.model_dump(mode="json"),
            }
        )
        if asks_for_enrichment(ev.event, ev.change):
            incident_id = ids.get(ev.incident_id, ev.incident_id)
            at_once = ev.event in ENRICHED_AT_ONCE or requests.get(incident_id, {}).get("at_once", False)
            requests[incident_id] = {"event_id": envelope.id, "at_once": at_once}
    return rows, requests
