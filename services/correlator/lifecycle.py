"""The correlation core: alert changes, commands and periodic checks applied to incidents, without I/O.

The service loads a `World` (the incidents and alert occurrences a batch touches), applies every message
with the functions here in order, then writes back what they marked dirty, with the timeline entries and
events they produced. Everything here is deterministic in its inputs (times come from the messages or the
caller), so applying the same message twice leaves the same state as applying it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from services.correlator.rules import Flapping, Rule, RuleSet, group_key, group_labels, host_of, render_title
from shared.alert_limits import DEFAULT_LIMITS, AlertLimits, bound_webhook_alert, cut_text
from shared.contracts import (
    AlertAdjustments,
    AlertReceived,
    CommandAction,
    IncidentChange,
    IncidentCommand,
    IncidentEventType,
    IncidentSnapshot,
    IncidentState,
    TimelineKind,
    severity_rank,
    snapshot_of,
)
from shared.maintenance import MaintenanceWindow, in_maintenance

FIRING, RESOLVED, STALE = "firing", "resolved", "stale"
SYSTEM = "correlator"
SILENCED, INHIBITED = "silenced", "inhibited"
# Suppression is believed only while Alertmanager answered a poll this recently: an Alertmanager gone for good must not
# keep alerts alive forever, so past this the stale rule applies to suppressed alerts like to any other.
SUPPRESSION_TRUST = timedelta(minutes=10)


@dataclass(frozen=True)
class AlertChange:
    """One alert of a notification, as the correlator sees it."""

    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    generator_url: str
    source: str
    sender: str
    receiver: str
    seen_at: datetime
    # What was changed to keep the alert within limits, as stored (JSON); None: stored as sent.
    adjustments: dict[str, Any] | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return (self.labels.get("severity") or "none").lower()

    @property
    def sent_starts_at(self) -> str | None:
        """startsAt as sent, when it was impossible and the receipt time stands in for it."""
        return self.adjustments.get("starts_at") if self.adjustments else None

    @classmethod
    def from_message(cls, msg: AlertReceived, limits: AlertLimits = DEFAULT_LIMITS) -> AlertChange:
        """The alert within `limits` again (ingest bounded it, unless the message came from elsewhere)."""
        alert = msg.alert
        earlier = msg.adjusted
        receiver, removed = cut_text(msg.receiver, limits.max_label_value_bytes)
        if removed:
            cut = {**(earlier.cut if earlier else {}), "receiver": removed}
            earlier = (earlier or AlertAdjustments()).model_copy(update={"cut": cut})
        bounded = bound_webhook_alert(alert, msg.received_at, limits, earlier)
        adjustments = bounded.adjustments
        return cls(
            fingerprint=bounded.fingerprint,
            starts_at=bounded.starts_at,
            ends_at=bounded.ends_at,
            status=alert.status.value,
            labels=bounded.labels,
            annotations=bounded.annotations,
            generator_url=bounded.generator_url,
            source=msg.source.value,
            sender=msg.sender,
            receiver=receiver,
            seen_at=msg.received_at,
            adjustments=adjustments.model_dump(mode="json", exclude_defaults=True) if adjustments else None,
        )


@dataclass
class StoredAlert:
    """One alert occurrence: (fingerprint, starts_at)."""

    fingerprint: str
    starts_at: datetime
    status: str
    incident_id: int
    alertname: str
    severity: str
    host: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    first_seen_at: datetime
    last_seen_at: datetime
    ends_at: datetime | None = None
    resolved_at: datetime | None = None
    generator_url: str = ""
    source: str = "alertmanager"
    sender: str = ""
    receiver: str = ""
    adjustments: dict[str, Any] | None = None
    # startsAt as sent, when it was impossible (see AlertChange.sent_starts_at).
    sent_starts_at: str | None = None
    # Alertmanager's view (see set_suppression): None, SILENCED or INHIBITED; by which silences / inhibiting alerts.
    suppressed: str | None = None
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)
    suppressed_until: datetime | None = None

    @property
    def key(self) -> tuple[str, datetime]:
        return (self.fingerprint, self.starts_at)

    def brief(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "alertname": self.alertname,
            "host": self.host,
            "severity": self.severity,
            "status": self.status,
            "starts_at": self.starts_at.isoformat(),
            "sender": self.sender,
        }


@dataclass
class Incident:
    id: int  # negative until inserted
    key: str  # "" until inserted
    rule: str
    group_key: str
    group_labels: dict[str, str]
    title: str
    state: str
    opened_at: datetime
    first_alert_at: datetime
    last_alert_at: datetime
    last_seen_at: datetime
    announced: bool = False
    severity: str = "none"
    hosts: list[str] = field(default_factory=list)
    flapping: bool = False
    flap_times: list[datetime] = field(default_factory=list)
    revision: int = 1
    alert_count: int = 0
    firing_count: int = 0
    firing_severities: dict[str, int] = field(default_factory=dict)
    min_alerts: int = 1
    quiet_since: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    # The maintenance window it belongs to (services/correlator/maintenance.py); None: a real incident.
    maintenance: str | None = None

    def snapshot(self) -> IncidentSnapshot:
        return snapshot_of(self)


@dataclass
class TimelineEntry:
    incident_id: int
    at: datetime
    kind: TimelineKind
    actor: str | None
    detail: dict[str, Any]


@dataclass
class EventOut:
    incident_id: int
    event: IncidentEventType
    change: IncidentChange
    actor: str | None
    detail: dict[str, Any]
    snapshot: IncidentSnapshot


class AlertOutcome(StrEnum):
    """What one alert of a notification did (a label of `vigil_correlator_alerts_total`)."""

    new = "new"
    repeat = "repeat"
    resolved = "resolved"
    refired = "refired"
    foreign_sender = "foreign_sender"  # another sender's occurrence, which this one may not change


class CommandOutcome(StrEnum):
    applied = "applied"
    unchanged = "unchanged"  # already in the state asked for
    rejected = "rejected"  # CommandRejected
    duplicate = "duplicate"  # a redelivered command already applied


class CommandRejected(Exception):
    """A command that cannot apply to the incident as it is (e.g. reopen while the group has another)."""


class Group(NamedTuple):
    """Where an alert belongs: the rule it falls under, its group labels and the group's key."""

    rule: Rule
    labels: dict[str, str]
    key: str


@dataclass
class World:
    """The part of the database a batch works on, and what the batch changed."""

    rules: RuleSet
    incidents: dict[int, Incident] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)  # group_key → unresolved or newest incident id
    alerts: dict[tuple[str, datetime], StoredAlert] = field(default_factory=dict)
    latest: dict[str, StoredAlert] = field(default_factory=dict)  # fingerprint → newest occurrence known
    timeline: list[TimelineEntry] = field(default_factory=list)
    events: list[EventOut] = field(default_factory=list)
    dirty_incidents: set[int] = field(default_factory=set)
    dirty_alerts: dict[tuple[str, datetime], StoredAlert] = field(default_factory=dict)
    # Repeats that only moved last_seen_at: written with a much cheaper statement than a full upsert.
    seen_alerts: dict[tuple[str, datetime], StoredAlert] = field(default_factory=dict)
    # Notifications this batch received per occurrence (see count_notification), added to alerts.notifications by the
    # statement that writes the occurrence anyway: a delta, never an absolute count.
    notified: dict[tuple[str, datetime], int] = field(default_factory=dict)
    next_temp_id: int = -1
    groups: dict[str, Group] = field(default_factory=dict)

    def add_incident(self, incident: Incident, *, current: bool = True) -> None:
        self.incidents[incident.id] = incident
        if current:
            self.current[incident.group_key] = incident.id

    def add_alert(self, alert: StoredAlert) -> None:
        self.alerts[alert.key] = alert
        newest = self.latest.get(alert.fingerprint)
        if newest is None or newest.starts_at <= alert.starts_at:
            self.latest[alert.fingerprint] = alert

    def count_notification(self, alert: StoredAlert) -> None:
        self.notified[alert.key] = self.notified.get(alert.key, 0) + 1

    def current_of(self, gkey: str) -> Incident | None:
        iid = self.current.get(gkey)
        return self.incidents.get(iid) if iid is not None else None

    # --- recording changes ---

    def touch(self, inc: Incident) -> None:
        """The incident changed: a new revision, to be written."""
        inc.revision += 1
        self.dirty_incidents.add(inc.id)

    def note(self, inc: Incident, at: datetime, kind: TimelineKind, actor: str | None, detail: dict[str, Any]) -> None:
        """A line in the incident's timeline."""
        self.timeline.append(TimelineEntry(inc.id, at, kind, actor, detail))

    def emit(
        self, inc: Incident, event: IncidentEventType, change: IncidentChange, actor: str | None, detail: dict[str, Any]
    ) -> None:
        """An incident event, once the incident is announced (before that, subscribers have not heard of it)."""
        if inc.announced:
            self.events.append(EventOut(inc.id, event, change, actor, detail, inc.snapshot()))


# --- alerts -------------------------------------------------------------------------------------


def apply_alert(world: World, change: AlertChange) -> AlertOutcome:
    """Apply one alert of a notification; returns the outcome: new, repeat, resolved, refired, or foreign_sender
    (another sender's occurrence, which this one may not change)."""
    existing = world.alerts.get((change.fingerprint, change.starts_at))
    if existing is None and change.sent_starts_at is not None:
        existing = _same_impossible_start(world, change)
        if existing is not None:
            change = replace(change, starts_at=existing.starts_at)
    if existing is None:
        return _new_occurrence(world, change)
    if existing.sender and change.sender != existing.sender:
        # An occurrence belongs to the sender that fired it: a second Alertmanager, or a token leaked to a script,
        # must not resolve (or keep alive) what another one reported.
        return AlertOutcome.foreign_sender
    inc = world.incidents[existing.incident_id]
    seen = change.seen_at
    if seen != existing.last_seen_at:
        # Every notification of the occurrence counts (repeats, the resolve, one overtaken by a newer one in another
        # lane), except the newest one counted coming again: the broker redelivering a message whose batch committed
        # before it was acknowledged. Its receipt time (set once by ingest) is the occurrence's last_seen_at.
        world.count_notification(existing)
    if seen > existing.last_seen_at:
        existing.last_seen_at = seen
        world.seen_alerts[existing.key] = existing
    if seen > inc.last_seen_at:
        inc.last_seen_at = seen
        world.dirty_incidents.add(inc.id)
    if change.status == RESOLVED and existing.status in (FIRING, STALE):
        _resolve_alert(world, inc, existing, change.ends_at or seen, seen)
        return AlertOutcome.resolved
    if change.status == FIRING and existing.status == STALE:
        # Alertmanager is repeating it again: the stale mark was wrong, the alert is still firing.
        if inc.state == IncidentState.resolved:
            rule = _rule_of(world, change)
            target = _target_for_firing(world, rule, change, seen)
            if target.id != inc.id:
                _move_alert(world, existing, inc, target)
                inc = target
        _set_firing(world, inc, existing, seen, TimelineKind.alert_refired, refire=True)
        return AlertOutcome.refired
    # A repeat of a known state, or a stale firing after the resolve (reordered): nothing to change.
    return AlertOutcome.repeat


def _same_impossible_start(world: World, change: AlertChange) -> StoredAlert | None:
    """The occurrence an alert with an impossible startsAt repeats: the newest of its fingerprint, if that one was
    sent with the same startsAt. Its receipt time stood in for startsAt, so each repeat would otherwise be new."""
    newest = world.latest.get(change.fingerprint)
    if newest is not None and newest.sent_starts_at == change.sent_starts_at and newest.key in world.alerts:
        return newest
    return None


def _rule_of(world: World, change: AlertChange) -> Rule:
    return group_of_change(world, change).rule


def group_of(rules: RuleSet, labels: Mapping[str, str]) -> Group:
    rule = rules.select(labels)
    grouped = group_labels(rule, labels)
    return Group(rule, grouped, group_key(rule, grouped))


def group_of_change(world: World, change: AlertChange) -> Group:
    # A batch asks this several times per alert; labels (hence the answer) are fixed per fingerprint.
    found = world.groups.get(change.fingerprint)
    if found is None:
        found = world.groups[change.fingerprint] = group_of(world.rules, change.labels)
    return found


def _new_occurrence(world: World, change: AlertChange) -> AlertOutcome:
    seen = change.seen_at
    rule = _rule_of(world, change)
    previous = world.latest.get(change.fingerprint)
    if change.status == FIRING:
        inc = _target_for_firing(world, rule, change, seen)
    else:
        inc = _target_for_resolved(world, rule, change, seen)
    alert = StoredAlert(
        fingerprint=change.fingerprint,
        starts_at=change.starts_at,
        status=change.status,
        incident_id=inc.id,
        alertname=change.alertname,
        severity=change.severity,
        host=host_of(change.labels),
        labels=dict(change.labels),
        annotations=dict(change.annotations),
        first_seen_at=seen,
        last_seen_at=seen,
        ends_at=change.ends_at if change.status == RESOLVED else None,
        resolved_at=seen if change.status == RESOLVED else None,
        generator_url=change.generator_url,
        source=change.source,
        sender=change.sender,
        receiver=change.receiver,
        adjustments=change.adjustments,
        sent_starts_at=change.sent_starts_at,
    )
    world.add_alert(alert)
    world.dirty_alerts[alert.key] = alert
    world.count_notification(alert)
    inc.maintenance = maintenance_after(world.rules.maintenance, inc, change.labels, change.starts_at)
    refire = (
        previous is not None
        and previous.incident_id == inc.id
        and previous.sender == change.sender
        and previous.starts_at < change.starts_at
        and change.status == FIRING
    )
    inc.alert_count += 1
    inc.first_alert_at = min(inc.first_alert_at, change.starts_at)
    inc.last_alert_at = max(inc.last_alert_at, change.starts_at)
    inc.last_seen_at = max(inc.last_seen_at, seen)
    if alert.host and alert.host not in inc.hosts:
        inc.hosts.append(alert.host)
    world.touch(inc)
    world.note(inc, seen, TimelineKind.alert_refired if refire else TimelineKind.alert_added, None, alert.brief())
    if change.status == FIRING:
        _count_firing(inc, alert.severity, +1)
        inc.quiet_since = None
        if refire:
            _flap(world, inc, seen)
    elif inc.firing_count == 0 and inc.quiet_since is None and inc.state != IncidentState.resolved:
        inc.quiet_since = seen
    _update_severity(world, inc, seen)
    if not inc.announced and inc.state != IncidentState.resolved and inc.alert_count >= inc.min_alerts:
        inc.announced = True
        world.emit(inc, IncidentEventType.opened, IncidentChange.opened, None, {"alerts": [alert.brief()]})
    else:
        world.emit(inc, IncidentEventType.updated, IncidentChange.alerts_added, None, {"alerts": [alert.brief()]})
    return AlertOutcome.new


def _target_for_firing(world: World, rule: Rule, change: AlertChange, seen: datetime) -> Incident:
    """Join the group's incident, reopen it, or open a new one (closing one that went quiet)."""
    _, grouped, gkey = group_of_change(world, change)
    cur = world.current_of(gkey)
    if cur is not None and cur.state != IncidentState.resolved:
        if cur.firing_count > 0 or cur.flapping or seen - cur.last_seen_at <= rule.window:
            return cur
        # Quiet for longer than the window: what comes now is a new problem, not this one.
        _resolve_incident(world, cur, seen, SYSTEM, {"reason": "window_expired"})
    elif cur is not None and cur.resolved_at is not None and seen - cur.resolved_at <= rule.reopen_window:
        _reopen(world, cur, seen, None, {"reason": "alert_fired", "alertname": change.alertname})
        return cur
    return _open_incident(world, rule, grouped, gkey, change, seen)


def _target_for_resolved(world: World, rule: Rule, change: AlertChange, seen: datetime) -> Incident:
    """A resolved alert never seen firing (reordered or lost delivery) is recorded where it belongs,
    without reopening anything: the group's incident if recent, else a new one that resolves itself."""
    _, grouped, gkey = group_of_change(world, change)
    cur = world.current_of(gkey)
    if cur is not None:
        if cur.state != IncidentState.resolved and (cur.firing_count > 0 or seen - cur.last_seen_at <= rule.window):
            return cur
        if cur.state == IncidentState.resolved and cur.resolved_at and seen - cur.resolved_at <= rule.reopen_window:
            return cur
        if cur.state != IncidentState.resolved:
            _resolve_incident(world, cur, seen, SYSTEM, {"reason": "window_expired"})
    inc = _open_incident(world, rule, grouped, gkey, change, seen)
    inc.quiet_since = seen
    return inc


def _open_incident(
    world: World, rule: Rule, grouped: dict[str, str], gkey: str, change: AlertChange, seen: datetime
) -> Incident:
    inc = Incident(
        id=world.next_temp_id,
        key="",
        rule=rule.name,
        group_key=gkey,
        group_labels=grouped,
        title=render_title(rule, grouped, change.labels, change.annotations),
        state=IncidentState.open,
        opened_at=seen,
        first_alert_at=change.starts_at,
        last_alert_at=change.starts_at,
        last_seen_at=seen,
        min_alerts=rule.min_alerts,
        severity=change.severity,
        revision=0,
    )
    world.next_temp_id -= 1
    world.add_incident(inc)
    world.touch(inc)
    world.note(inc, seen, TimelineKind.incident_opened, None, {"rule": rule.name, "group": grouped, "title": inc.title})
    return inc


def _move_alert(world: World, alert: StoredAlert, old: Incident, new: Incident) -> None:
    old.alert_count -= 1
    world.touch(old)
    alert.incident_id = new.id
    new.alert_count += 1
    new.first_alert_at = min(new.first_alert_at, alert.starts_at)
    new.last_alert_at = max(new.last_alert_at, alert.starts_at)
    if alert.host and alert.host not in new.hosts:
        new.hosts.append(alert.host)
    world.dirty_alerts[alert.key] = alert


def _set_firing(
    world: World, inc: Incident, alert: StoredAlert, at: datetime, kind: TimelineKind, *, refire: bool
) -> None:
    alert.status = FIRING
    alert.resolved_at = None
    world.dirty_alerts[alert.key] = alert
    _count_firing(inc, alert.severity, +1)
    inc.quiet_since = None
    world.touch(inc)
    world.note(inc, at, kind, None, alert.brief())
    if refire:
        _flap(world, inc, at)
    _update_severity(world, inc, at)
    if not inc.announced and inc.alert_count >= inc.min_alerts:
        inc.announced = True
        world.emit(inc, IncidentEventType.opened, IncidentChange.opened, None, {"alerts": [alert.brief()]})
    else:
        world.emit(
            inc,
            IncidentEventType.updated,
            IncidentChange.alerts_added,
            None,
            {"alerts": [alert.brief()], "refired": True},
        )


def _resolve_alert(world: World, inc: Incident, alert: StoredAlert, ends_at: datetime, at: datetime) -> None:
    was_firing = alert.status == FIRING
    alert.status = RESOLVED
    alert.ends_at = ends_at
    alert.resolved_at = at
    world.dirty_alerts[alert.key] = alert
    if was_firing:
        _count_firing(inc, alert.severity, -1)
    world.touch(inc)
    world.note(inc, at, TimelineKind.alert_resolved, None, alert.brief())
    if was_firing:
        _flap(world, inc, at)
    if inc.firing_count == 0 and inc.state != IncidentState.resolved:
        inc.quiet_since = at
    _update_severity(world, inc, at)
    world.emit(inc, IncidentEventType.updated, IncidentChange.alert_resolved, None, {"alerts": [alert.brief()]})


def _count_firing(inc: Incident, severity: str, delta: int) -> None:
    inc.firing_count = max(0, inc.firing_count + delta)
    count = inc.firing_severities.get(severity, 0) + delta
    if count > 0:
        inc.firing_severities[severity] = count
    else:
        inc.firing_severities.pop(severity, None)


def maintenance_after(
    windows: Iterable[MaintenanceWindow], inc: Incident, labels: Mapping[str, str], starts_at: datetime
) -> str | None:
    """The incident's maintenance mark once a new occurrence (`labels`, `starts_at`) joins it; called before it is
    counted. An incident is maintenance while every occurrence it holds started inside a window: the one that opens it
    marks it with that window's name, and one outside every window clears the mark for good (a real problem joined
    it). An alert's time is its startsAt: when the problem began, not when the notification happened to arrive."""
    opening = inc.alert_count == 0
    if not opening and inc.maintenance is None:
        return None  # some alert of it was outside every window: it stays a real incident
    window = in_maintenance(windows, labels, starts_at)
    if window is None:
        return None
    return inc.maintenance if inc.maintenance is not None else window.name


def highest_severity(firing: Mapping[str, int], fallback: str) -> str:
    """The highest severity among firing alerts; with none firing, the incident keeps its last one."""
    present = [s for s, n in firing.items() if n > 0]
    if not present:
        return fallback
    return max(present, key=lambda s: (severity_rank(s), s))


def _update_severity(world: World, inc: Incident, at: datetime) -> None:
    new = highest_severity(inc.firing_severities, inc.severity)
    if new != inc.severity:
        old, inc.severity = inc.severity, new
        world.touch(inc)
        world.note(inc, at, TimelineKind.severity_changed, None, {"from": old, "to": new})
        world.emit(inc, IncidentEventType.updated, IncidentChange.severity_changed, None, {"from": old, "to": new})


def _flap(world: World, inc: Incident, at: datetime) -> None:
    """Count a firing/resolved switch; enough of them within the window mark the incident flapping."""
    flapping = world.rules.defaults.flapping
    inc.flap_times = sorted([t for t in inc.flap_times if at - t <= flapping.window] + [at])[-flapping.changes * 2 :]
    recent = [t for t in inc.flap_times if at - t <= flapping.window]
    if not inc.flapping and len(recent) >= flapping.changes:
        inc.flapping = True
        inc.quiet_since = None
        detail = {"changes": len(recent), "window_s": int(flapping.window.total_seconds())}
        world.note(inc, at, TimelineKind.flapping_started, None, detail)
        world.emit(inc, IncidentEventType.updated, IncidentChange.flapping_started, None, detail)
    world.dirty_incidents.add(inc.id)


# --- incident state changes ---------------------------------------------------------------------


def _resolve_incident(world: World, inc: Incident, at: datetime, actor: str, detail: dict[str, Any]) -> None:
    inc.state = IncidentState.resolved
    inc.resolved_at = at
    inc.resolved_by = actor
    inc.quiet_since = None
    world.touch(inc)
    world.note(inc, at, TimelineKind.incident_resolved, actor, detail)
    world.emit(inc, IncidentEventType.resolved, IncidentChange.resolved, actor, detail)


def _reopen(world: World, inc: Incident, at: datetime, actor: str | None, detail: dict[str, Any]) -> None:
    inc.state = IncidentState.open
    inc.resolved_at = inc.resolved_by = None
    inc.acknowledged_at = inc.acknowledged_by = None
    inc.quiet_since = None
    world.current[inc.group_key] = inc.id
    world.touch(inc)
    world.note(inc, at, TimelineKind.incident_reopened, actor, detail)
    world.emit(inc, IncidentEventType.reopened, IncidentChange.reopened, actor, detail)


def _acknowledge(world: World, inc: Incident, at: datetime, actor: str, detail: dict[str, Any]) -> None:
    inc.state = IncidentState.acknowledged
    inc.acknowledged_at, inc.acknowledged_by = at, actor
    world.touch(inc)
    world.note(inc, at, TimelineKind.incident_acknowledged, actor, detail)
    world.emit(inc, IncidentEventType.acknowledged, IncidentChange.acknowledged, actor, detail)


def apply_command(world: World, inc: Incident, cmd: IncidentCommand) -> CommandOutcome:
    """A person's command; returns `applied` or `unchanged` (already in that state), or raises CommandRejected."""
    at, actor = cmd.requested_at, cmd.actor
    if cmd.action == CommandAction.comment:
        world.touch(inc)
        world.note(inc, at, TimelineKind.comment, actor, {"comment": cmd.comment})
        world.emit(inc, IncidentEventType.updated, IncidentChange.comment, actor, {"comment": cmd.comment})
        return CommandOutcome.applied
    detail = {"comment": cmd.comment} if cmd.comment else {}
    if cmd.action in (CommandAction.silence, CommandAction.unsilence):
        # The silence itself lives in Alertmanager (the web made it); the poller marks the alerts it covers. This
        # records who asked for it from Vigil, for the timeline and the audit.
        silenced = cmd.action == CommandAction.silence
        noted: dict[str, Any] = {"silence_id": cmd.silence_id, "via": "vigil"}
        if silenced:
            noted |= {"until": cmd.until.isoformat() if cmd.until else None, "comment": cmd.comment}
        world.touch(inc)
        kind = TimelineKind.alert_silenced if silenced else TimelineKind.alert_unsilenced
        change = IncidentChange.alert_silenced if silenced else IncidentChange.alert_unsilenced
        world.note(inc, at, kind, actor, noted)
        world.emit(inc, IncidentEventType.updated, change, actor, noted)
        return CommandOutcome.applied
    if cmd.action == CommandAction.acknowledge:
        if inc.state != IncidentState.open:
            return CommandOutcome.unchanged
        _acknowledge(world, inc, at, actor, detail)
        return CommandOutcome.applied
    if cmd.action == CommandAction.resolve:
        if inc.state == IncidentState.resolved:
            return CommandOutcome.unchanged
        _resolve_incident(world, inc, at, actor, detail)
        return CommandOutcome.applied
    if inc.state != IncidentState.resolved:
        return CommandOutcome.unchanged
    other = world.current_of(inc.group_key)
    if other is not None and other.id != inc.id and other.state != IncidentState.resolved:
        raise CommandRejected(f"{other.key} is already open for the same group; reopen refused")
    # Reopened by a person: it stays open until someone resolves it or its alerts resolve again.
    _reopen(world, inc, at, actor, detail)
    return CommandOutcome.applied


# --- periodic checks ----------------------------------------------------------------------------


def mark_stale(world: World, alert: StoredAlert, now: datetime, *, suppression_trusted: bool = False) -> bool:
    """A firing alert Alertmanager stopped repeating: counted out, so its incident can end. Not one Alertmanager
    silences or inhibits (it stops repeating those on purpose), while its last poll is recent (`suppression_trusted`,
    see SUPPRESSION_TRUST)."""
    stale_after = world.rules.defaults.stale_after
    if alert.status != FIRING or now - alert.last_seen_at < stale_after:
        return False
    if alert.suppressed is not None and suppression_trusted:
        return False
    inc = world.incidents[alert.incident_id]
    alert.status = STALE
    world.dirty_alerts[alert.key] = alert
    _count_firing(inc, alert.severity, -1)
    world.touch(inc)
    detail = {**alert.brief(), "last_seen_at": alert.last_seen_at.isoformat()}
    world.note(inc, now, TimelineKind.alert_stale, SYSTEM, detail)
    if inc.firing_count == 0 and inc.state != IncidentState.resolved:
        inc.quiet_since = now
    _update_severity(world, inc, now)
    world.emit(inc, IncidentEventType.updated, IncidentChange.alert_stale, SYSTEM, {"alerts": [detail]})
    return True


@dataclass(frozen=True)
class Silence:
    """One of Alertmanager's silences, as much as the timeline and an acknowledgement need."""

    id: str
    created_by: str
    comment: str
    ends_at: datetime


@dataclass(frozen=True)
class Suppression:
    """What Alertmanager's poll says of one alert: the silences and inhibiting alerts (fingerprints) holding it back,
    and whether the alert was in its answer at all."""

    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    present: bool = True

    @property
    def state(self) -> str | None:
        return SILENCED if self.silenced_by else INHIBITED if self.inhibited_by else None

    def recorded(self, silences: Mapping[str, Silence]) -> tuple[str | None, list[str], list[str], datetime | None]:
        """What an alert row records of it: state, silences, inhibiting alerts (sorted, once each), and the end of
        the last silence (None while only inhibited, or while its silences are unknown)."""
        silenced_by = sorted(set(self.silenced_by))
        ends = [silences[s].ends_at for s in silenced_by if s in silences]
        return self.state, silenced_by, sorted(set(self.inhibited_by)), max(ends) if ends else None


def set_suppression(
    world: World,
    alert: StoredAlert,
    suppression: Suppression,
    silences: Mapping[str, Silence],
    now: datetime,
    *,
    acknowledges: bool = False,
) -> bool:
    """Record Alertmanager's suppression of a firing (or stale) alert; returns whether anything changed.

    A stale alert Alertmanager still holds back is firing again (the stale mark was wrong). An alert that stops being
    suppressed is ordinary: if Alertmanager still has it, that poll counts as seeing it, so the stale rule counts from
    now, not from the last notification before the silence. With `acknowledges`, a silence newly covering an alert
    of an open incident acknowledges it in the name of the silence's author."""
    if alert.status not in (FIRING, STALE):
        return False
    inc = world.incidents[alert.incident_id]
    recorded = suppression.recorded(silences)
    state, silenced_by, _, _ = recorded
    revive = alert.status == STALE and state is not None and inc.state != IncidentState.resolved
    if (alert.suppressed, alert.silenced_by, alert.inhibited_by, alert.suppressed_until) == recorded and not revive:
        return False
    new_silences = [s for s in silenced_by if s not in alert.silenced_by]
    was = alert.suppressed
    alert.suppressed, alert.silenced_by, alert.inhibited_by, alert.suppressed_until = recorded
    if suppression.present and now > alert.last_seen_at:
        alert.last_seen_at = now
    world.dirty_alerts[alert.key] = alert
    world.touch(inc)
    if revive:
        _set_firing(world, inc, alert, now, TimelineKind.alert_refired, refire=False)
    if state is None and was is None:
        return True
    detail: dict[str, Any] = {**alert.brief(), **suppression_detail(alert, silences)}
    if state is None:
        world.note(inc, now, TimelineKind.alert_unsilenced, None, detail)
        world.emit(inc, IncidentEventType.updated, IncidentChange.alert_unsilenced, None, {"alerts": [detail]})
        return True
    world.note(inc, now, TimelineKind.alert_silenced, None, detail)
    world.emit(inc, IncidentEventType.updated, IncidentChange.alert_silenced, None, {"alerts": [detail]})
    if acknowledges and new_silences and inc.state == IncidentState.open:
        first = silences.get(new_silences[0])
        actor = (first.created_by if first else "") or "alertmanager"
        ack: dict[str, Any] = {"via": "silence", "silence_id": new_silences[0]}
        if first is not None and first.comment:
            ack["comment"] = first.comment
        _acknowledge(world, inc, now, actor, ack)
    return True


def suppression_detail(alert: StoredAlert, silences: Mapping[str, Silence]) -> dict[str, Any]:
    """The suppression as a timeline entry and an event tell it."""
    return {
        "suppressed": alert.suppressed,
        "silences": [
            {"id": s, "created_by": silences[s].created_by, "comment": silences[s].comment}
            if s in silences
            else {"id": s}
            for s in alert.silenced_by
        ],
        "inhibited_by": alert.inhibited_by,
        "until": alert.suppressed_until.isoformat() if alert.suppressed_until else None,
    }


def settle_below(flapping: Flapping) -> int:
    """Flapping ends once fewer switches than this remain in the window: half the threshold that started it."""
    return max(1, flapping.changes // 2)


def settle_flapping(world: World, inc: Incident, now: datetime) -> bool:
    """End flapping once fewer than `settle_below` switches remain in the window (the sweep's query finds such
    incidents by the same rule)."""
    flapping = world.rules.defaults.flapping
    recent = [t for t in inc.flap_times if now - t <= flapping.window]
    if not inc.flapping or len(recent) >= settle_below(flapping):
        return False
    inc.flapping = False
    inc.flap_times = recent
    if inc.firing_count == 0 and inc.state != IncidentState.resolved:
        inc.quiet_since = now
    world.touch(inc)
    world.note(inc, now, TimelineKind.flapping_stopped, SYSTEM, {"changes": len(recent)})
    world.emit(inc, IncidentEventType.updated, IncidentChange.flapping_stopped, SYSTEM, {"changes": len(recent)})
    return True


def auto_resolve(world: World, inc: Incident, now: datetime) -> bool:
    """Resolve an incident whose alerts are all resolved or stale, once the grace period has passed."""
    grace = world.rules.defaults.resolve_grace
    if (
        inc.state == IncidentState.resolved
        or inc.firing_count > 0
        or inc.flapping
        or inc.quiet_since is None
        or now - inc.quiet_since < grace
    ):
        return False
    _resolve_incident(world, inc, now, SYSTEM, {"reason": "all_alerts_resolved"})
    return True


# --- events -------------------------------------------------------------------------------------


def coalesce_events(events: list[EventOut]) -> list[EventOut]:
    """Merge back-to-back `updated` events of one incident with the same change into one (the latest
    snapshot, every alert listed): a batch of 200 alerts for one host is one event, not 200."""
    out: list[EventOut] = []
    last_of: dict[int, int] = {}
    for ev in events:
        i = last_of.get(ev.incident_id, -1)
        prev = out[i] if i >= 0 else None
        if (
            prev is not None
            and prev.event == ev.event == IncidentEventType.updated
            and prev.change == ev.change
            and "alerts" in prev.detail
            and "alerts" in ev.detail
        ):
            merged = {**prev.detail, **ev.detail, "alerts": [*prev.detail["alerts"], *ev.detail["alerts"]]}
            out[i] = EventOut(ev.incident_id, ev.event, ev.change, ev.actor, merged, ev.snapshot)
            continue
        last_of[ev.incident_id] = len(out)
        out.append(ev)
    return out
