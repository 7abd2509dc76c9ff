"""One transaction per batch of messages, and per sweep: decode, lock the groups, load, apply the pure
core in delivery order, write back. Returns the outbox rows to publish once the transaction commits."""

from __future__ import annotations

import logging
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client import Counter
from pydantic import ValidationError

from services.correlator.lifecycle import (
    SUPPRESSION_TRUST,
    AlertChange,
    AlertOutcome,
    CommandOutcome,
    CommandRejected,
    EventOut,
    Group,
    World,
    apply_alert,
    apply_command,
    auto_resolve,
    coalesce_events,
    group_of,
    mark_stale,
    settle_below,
    settle_flapping,
)
from services.correlator.maintenance import with_stored_windows
from services.correlator.rules import RuleSet
from services.correlator.store import SWEEP_LOCK, Q, lock_and_load, write_world
from shared.alert_limits import DEFAULT_LIMITS, AlertLimits
from shared.contracts import (
    COMMAND_TYPE_PREFIX,
    AlertReceived,
    AlertsReceived,
    Envelope,
    IncidentCommand,
    MessageType,
    RawEnvelope,
)
from shared.db import Pool
from shared.jsonlog import incident_key
from shared.messaging import Delivery, PermanentError

log = logging.getLogger(__name__)

ALERTS = Counter("vigil_correlator_alerts_total", "Alerts applied, by outcome", ["outcome"])
COMMANDS = Counter("vigil_correlator_commands_total", "Commands applied, by action and outcome", ["action", "outcome"])
SWEPT = Counter("vigil_correlator_swept_total", "Periodic changes, by kind", ["kind"])


@dataclass
class Decoded:
    alerts: list[AlertChange] = field(default_factory=list)
    commands: list[tuple[uuid.UUID, IncidentCommand]] = field(default_factory=list)
    order: list[tuple[Literal["alert", "command"], int]] = field(default_factory=list)  # index, in delivery order


def split_notification(envelope: RawEnvelope) -> list[tuple[str, bytes]]:
    """An `alerts.received` message of several alerts as one message per alert (id, body: an `alerts.received` of
    one, its id derived from the notification's): what the consumer sends round when the notification failed, so
    that an alert at fault fails alone and the others are stored. Empty for any other message, or one that cannot
    be split."""
    if envelope.type != MessageType.alerts_received:
        return []
    try:
        notification = AlertsReceived.model_validate(envelope.data)
    except ValidationError:
        return []
    if len(notification.alerts) < 2:
        return []
    parts = []
    for n, received in enumerate(notification.alerts):
        part = Envelope[AlertsReceived](
            id=uuid.uuid5(envelope.id, str(n)),
            type=envelope.type,
            version=envelope.version,
            occurred_at=envelope.occurred_at,
            producer=envelope.producer,
            data=AlertsReceived(alerts=[received]),
        )
        parts.append((str(part.id), part.model_dump_json(by_alias=True).encode()))
    return parts


def decode_batch(deliveries: list[Delivery], limits: AlertLimits = DEFAULT_LIMITS) -> Decoded:
    """Payloads of the batch, alerts within `limits`; a message that can never be applied raises PermanentError."""
    out = Decoded()
    for d in deliveries:
        env = d.envelope
        try:
            if env.type == MessageType.alerts_received:
                for received in AlertsReceived.model_validate(env.data).alerts:
                    out.order.append(("alert", len(out.alerts)))
                    out.alerts.append(AlertChange.from_message(received, limits))
            elif env.type == MessageType.alert_received:
                out.order.append(("alert", len(out.alerts)))
                out.alerts.append(AlertChange.from_message(AlertReceived.model_validate(env.data), limits))
            elif env.type.startswith(COMMAND_TYPE_PREFIX):
                out.order.append(("command", len(out.commands)))
                out.commands.append((env.id, IncidentCommand.model_validate(env.data)))
            else:
                raise PermanentError(f"message {env.id}: the correlator does not handle type {env.type!r}")
        except ValidationError as exc:
            raise PermanentError(f"message {env.id} ({env.type}): invalid data: {exc.errors()[:3]}") from None
    return out


async def correlate_batch(
    pool: Pool, rules: RuleSet, deliveries: list[Delivery], limits: AlertLimits = DEFAULT_LIMITS
) -> list[int]:
    batch = decode_batch(deliveries, limits)
    known: dict[str, Group] = {}
    for a in batch.alerts:
        if a.fingerprint not in known:
            known[a.fingerprint] = group_of(rules, a.labels)
    groups = {g.key for g in known.values()}
    tally: Tally[AlertOutcome] = Tally()
    async with pool.connection() as conn, conn.transaction():
        targets: dict[str, dict[str, Any]] = {}
        if batch.commands:
            cur = await conn.execute(Q.incidents_by_key, {"keys": sorted({c.key for _, c in batch.commands})})
            targets = {r["key"]: r for r in await cur.fetchall()}
            unknown = sorted({c.key for _, c in batch.commands} - set(targets))
            if unknown:
                # The web only offers commands for incidents it read from the database, so these were committed
                # or never existed: waiting would not help.
                raise PermanentError(f"unknown incident key(s): {', '.join(unknown)}")
            groups |= {t["group_key"] for t in targets.values()}
        world = await lock_and_load(
            conn,
            rules,
            [(a.fingerprint, a.starts_at) for a in batch.alerts],
            groups,
            [t["id"] for t in targets.values()],
            [a.fingerprint for a in batch.alerts if a.sent_starts_at is not None],
        )
        done: set[uuid.UUID] = set()
        if batch.commands:
            cur = await conn.execute(Q.processed_commands, {"ids": [mid for mid, _ in batch.commands]})
            done = {r["message_id"] for r in await cur.fetchall()}
        world.groups.update(known)
        if batch.alerts:
            world.rules = await with_stored_windows(conn, rules, min(a.starts_at for a in batch.alerts))
        by_key = {inc.key: inc for inc in world.incidents.values()}
        applied_commands: list[uuid.UUID] = []
        for kind, index in batch.order:
            if kind == "alert":
                outcome = apply_alert(world, batch.alerts[index])
                tally[outcome] += 1
                if outcome is AlertOutcome.foreign_sender:
                    _log_foreign(world, batch.alerts[index])
                continue
            message_id, cmd = batch.commands[index]
            if message_id in done:
                COMMANDS.labels(cmd.action.value, CommandOutcome.duplicate.value).inc()
                continue
            done.add(message_id)
            applied_commands.append(message_id)
            token = incident_key.set(cmd.key)
            try:
                result = apply_command(world, by_key[cmd.key], cmd)
            except CommandRejected as exc:
                result = CommandOutcome.rejected
                log.warning(
                    "command rejected", extra={"action": cmd.action.value, "actor": cmd.actor, "error": str(exc)}
                )
            finally:
                incident_key.reset(token)
            COMMANDS.labels(cmd.action.value, result.value).inc()
        events = coalesce_events(world.events)
        outbox_ids = await write_world(conn, world, events)
        if applied_commands:
            await conn.execute(Q.mark_processed, {"ids": applied_commands})
    for outcome, n in tally.items():
        ALERTS.labels(outcome.value).inc(n)
    log_incident_changes(world, events)
    return outbox_ids


async def sweep(pool: Pool, rules: RuleSet, now: datetime, *, limit: int = 1000) -> list[int]:
    """Stale alerts, calmed flapping, and auto-resolve after grace; one replica at a time does it."""
    defaults = rules.defaults
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(Q.try_sweep_lock, {"key": SWEEP_LOCK})
        row = await cur.fetchone()
        if not row or not row["got"]:
            return []
        # Alertmanager's silences and inhibitions keep alerts from going stale only while it answers polls.
        cur = await conn.execute(Q.suppression_polled_at)
        polled = await cur.fetchone()
        trusted = polled is not None and now - polled["polled_at"] < SUPPRESSION_TRUST
        cur = await conn.execute(
            Q.stale_candidates,
            {"cutoff": now - defaults.stale_after, "limit": limit, "suppression_trusted": trusted},
        )
        stale = await cur.fetchall()
        grace_cutoff = now - defaults.resolve_grace
        cur = await conn.execute(
            Q.sweep_incidents,
            {
                "grace_cutoff": grace_cutoff,
                "flap_cutoff": now - defaults.flapping.window,
                "settle_below": settle_below(defaults.flapping),
                "limit": limit,
            },
        )
        incidents = await cur.fetchall()
        if not stale and not incidents:
            return []
        groups = {r["group_key"] for r in stale} | {r["group_key"] for r in incidents}
        # Loaded again under the locks: a batch may have changed them since the lookups above.
        world = await lock_and_load(
            conn, rules, [(r["fingerprint"], r["starts_at"]) for r in stale], groups, [r["id"] for r in incidents]
        )
        for r in stale:
            alert = world.alerts.get((r["fingerprint"], r["starts_at"]))
            if alert is not None and mark_stale(world, alert, now, suppression_trusted=trusted):
                SWEPT.labels("alert_stale").inc()
        for inc in list(world.incidents.values()):
            if settle_flapping(world, inc, now):
                SWEPT.labels("flapping_stopped").inc()
            if auto_resolve(world, inc, now):
                SWEPT.labels("auto_resolved").inc()
        events = coalesce_events(world.events)
        outbox_ids = await write_world(conn, world, events)
    log_incident_changes(world, events)
    return outbox_ids


def _log_foreign(world: World, change: AlertChange) -> None:
    owner = world.alerts.get((change.fingerprint, change.starts_at)) or world.latest.get(change.fingerprint)
    incident = world.incidents.get(owner.incident_id) if owner is not None else None
    token = incident_key.set(incident.key if incident is not None else None)
    try:
        log.warning(
            "alert change refused: the occurrence belongs to another sender",
            extra={
                "fingerprint": change.fingerprint,
                "alertname": change.alertname,
                "status": change.status,
                "sender": change.sender,
                "owner": owner.sender if owner is not None else None,
            },
        )
    finally:
        incident_key.reset(token)


def log_incident_changes(world: World, events: list[EventOut]) -> None:
    for ev in events:
        if ev.change in ("opened", "resolved", "reopened", "flapping_started"):
            token = incident_key.set(world.incidents[ev.incident_id].key)
            try:
                log.info(f"incident {ev.change}", extra={"severity": ev.snapshot.severity, "actor": ev.actor})
            finally:
                incident_key.reset(token)
