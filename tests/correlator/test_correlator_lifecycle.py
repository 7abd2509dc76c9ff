"""Pure tests of the correlation core: transitions, invariants, and idempotence (property-based)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.correlator.lifecycle import (
    AlertChange,
    CommandRejected,
    EventOut,
    Incident,
    World,
    apply_alert,
    apply_command,
    auto_resolve,
    coalesce_events,
    highest_severity,
    mark_stale,
    settle_flapping,
)
from services.correlator.rules import parse_rules
from shared.contracts import IncidentCommand, IncidentEventType, IncidentSnapshot
from shared.fingerprint import label_fingerprint

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
RULES = parse_rules(
    {
        "defaults": {"flapping": {"changes": 4, "window": "30m"}},
        "rules": [
            {"name": "warn", "matchers": ['severity="warning"'], "min_alerts": 2},
            {"name": "default", "group_by": ["$host"]},
        ],
    }
)


def change(
    alertname: str = "HostDown",
    host: str = "web-1",
    *,
    status: str = "firing",
    severity: str = "critical",
    starts: int = 0,
    seen: int | None = None,
) -> AlertChange:
    labels = {"alertname": alertname, "instance": f"{host}:9100", "severity": severity}
    return AlertChange(
        fingerprint=label_fingerprint(labels),
        starts_at=T0 + timedelta(minutes=starts),
        ends_at=None,
        status=status,
        labels=labels,
        annotations={},
        generator_url="",
        source="alertmanager",
        sender="am",
        receiver="vigil",
        seen_at=T0 + timedelta(minutes=starts if seen is None else seen),
    )


def only(world: World) -> Incident:
    [inc] = world.incidents.values()
    return inc


def state(world: World) -> dict[str, Any]:
    """What the database would hold: incidents, alerts, timeline and events (without Python identities)."""
    return {
        "incidents": {i.id: dataclasses.asdict(i) for i in world.incidents.values()},
        "alerts": {k: dataclasses.asdict(a) for k, a in world.alerts.items()},
        "timeline": [(t.incident_id, t.at, t.kind) for t in world.timeline],
        "events": [(e.incident_id, e.event, e.change, e.snapshot.revision) for e in world.events],
    }


def test_first_alert_opens_and_announces() -> None:
    world = World(RULES)
    assert apply_alert(world, change()) == "new"
    inc = only(world)
    assert (inc.state, inc.announced, inc.severity, inc.firing_count) == ("open", True, "critical", 1)
    assert inc.hosts == ["web-1"]
    assert inc.title == "HostDown on web-1" and inc.group_labels == {"host": "web-1"}
    assert [t.kind for t in world.timeline] == ["incident_opened", "alert_added"]
    assert [(e.event, e.change) for e in world.events] == [(IncidentEventType.opened, "opened")]


def test_repeat_only_refreshes_last_seen() -> None:
    world = World(RULES)
    apply_alert(world, change())
    before = dataclasses.asdict(only(world))
    assert apply_alert(world, change(seen=30)) == "repeat"
    after = dataclasses.asdict(only(world))
    assert after.pop("last_seen_at") == T0 + timedelta(minutes=30)
    before.pop("last_seen_at")
    assert after == before and len(world.events) == 1


def test_min_alerts_announces_on_the_threshold() -> None:
    world = World(RULES)
    apply_alert(world, change("A", severity="warning"))
    assert not only(world).announced and world.events == []
    apply_alert(world, change("B", severity="warning"))
    assert only(world).announced
    assert [e.change for e in world.events] == ["opened"]
    assert world.events[0].snapshot.alert_count == 2


def test_resolved_alert_lowers_severity_and_starts_the_grace() -> None:
    world = World(RULES)
    apply_alert(world, change("A", severity="critical"))
    apply_alert(world, change("B", severity="error"))
    apply_alert(world, change("A", severity="critical", status="resolved", seen=5))
    inc = only(world)
    assert (inc.severity, inc.firing_count, inc.quiet_since) == ("error", 1, None)
    apply_alert(world, change("B", severity="error", status="resolved", seen=6))
    assert (inc.severity, inc.firing_count, inc.quiet_since) == ("error", 0, T0 + timedelta(minutes=6))
    assert not auto_resolve(world, inc, T0 + timedelta(minutes=10))
    assert auto_resolve(world, inc, T0 + timedelta(minutes=11))
    assert (inc.state, inc.resolved_by) == ("resolved", "correlator")
    assert not auto_resolve(world, inc, T0 + timedelta(minutes=12))


def test_firing_after_its_resolve_is_ignored() -> None:
    world = World(RULES)
    apply_alert(world, change(status="resolved", seen=3))
    assert apply_alert(world, change(seen=4)) == "repeat"
    inc = only(world)
    assert inc.firing_count == 0 and inc.alert_count == 1 and inc.quiet_since == T0 + timedelta(minutes=3)


def test_stale_then_refired() -> None:
    world = World(RULES)
    apply_alert(world, change())
    alert = next(iter(world.alerts.values()))
    assert not mark_stale(world, alert, T0 + timedelta(hours=8))
    assert mark_stale(world, alert, T0 + timedelta(hours=9))
    inc = only(world)
    assert alert.status == "stale" and inc.firing_count == 0 and inc.quiet_since == T0 + timedelta(hours=9)
    assert apply_alert(world, change(seen=9 * 60 + 1)) == "refired"
    assert alert.status == "firing" and inc.firing_count == 1 and inc.quiet_since is None
    assert [t.kind for t in world.timeline][-2:] == ["alert_stale", "alert_refired"]


def test_flapping_starts_and_settles() -> None:
    world = World(RULES)
    for cycle in range(3):
        apply_alert(world, change(starts=10 * cycle))
        apply_alert(world, change(starts=10 * cycle, status="resolved", seen=10 * cycle + 5))
    inc = only(world)
    assert inc.flapping and len(world.incidents) == 1
    assert not auto_resolve(world, inc, T0 + timedelta(hours=1))
    assert settle_flapping(world, inc, T0 + timedelta(hours=1))
    assert not inc.flapping and inc.quiet_since == T0 + timedelta(hours=1)
    assert auto_resolve(world, inc, T0 + timedelta(hours=1, minutes=5))
    kinds = [t.kind for t in world.timeline]
    assert kinds.count("flapping_started") == kinds.count("flapping_stopped") == 1


def test_quiet_incident_is_replaced_after_the_window_and_reopened_within_the_reopen_window() -> None:
    world = World(RULES)
    apply_alert(world, change("A"))
    apply_alert(world, change("A", status="resolved", seen=1))
    apply_alert(world, change("B", starts=90))  # 89 minutes of quiet > 1h window
    first, second = sorted(world.incidents.values(), key=lambda i: -i.id)
    assert first.state == "resolved" and second.state == "open"
    apply_alert(world, change("B", starts=90, status="resolved", seen=95))
    auto_resolve(world, second, T0 + timedelta(minutes=101))
    apply_alert(world, change("C", starts=120))  # 19 minutes after the resolve
    assert second.state == "open" and len(world.incidents) == 2
    assert [e.change for e in world.events].count("reopened") == 1


def command(key: str, action: str, actor: str = "alice", comment: str = "") -> IncidentCommand:
    return IncidentCommand(key=key, action=action, actor=actor, comment=comment, requested_at=T0)


def test_commands() -> None:
    world = World(RULES)
    apply_alert(world, change())
    inc = only(world)
    inc.key = "INC-000001"
    assert apply_command(world, inc, command(inc.key, "acknowledge")) == "applied"
    assert apply_command(world, inc, command(inc.key, "acknowledge")) == "unchanged"
    assert (inc.state, inc.acknowledged_by) == ("acknowledged", "alice")
    assert apply_command(world, inc, command(inc.key, "resolve", "bob")) == "applied"
    assert apply_command(world, inc, command(inc.key, "resolve", "bob")) == "unchanged"
    assert (inc.state, inc.resolved_by) == ("resolved", "bob")
    assert apply_command(world, inc, command(inc.key, "reopen", "carol")) == "applied"
    assert inc.state == "open" and inc.acknowledged_at is None and inc.quiet_since is None
    assert apply_command(world, inc, command(inc.key, "comment", "dan", "hi")) == "applied"
    assert [t.kind for t in world.timeline][-4:] == [
        "incident_acknowledged",
        "incident_resolved",
        "incident_reopened",
        "comment",
    ]


def test_reopen_is_refused_while_the_group_has_another_open_incident() -> None:
    world = World(RULES)
    apply_alert(world, change("A"))
    old = only(world)
    old.key = "INC-000001"
    apply_command(world, old, command(old.key, "resolve"))
    apply_alert(world, change("B", starts=200))  # past the reopen window: a new incident
    assert len(world.incidents) == 2
    with pytest.raises(CommandRejected):
        apply_command(world, old, command(old.key, "reopen"))


def test_highest_severity() -> None:
    assert highest_severity({"warning": 2, "critical": 1}, "none") == "critical"
    assert highest_severity({"warning": 1, "P1": 1}, "none") in {"warning", "P1"}  # unknown ranks as warning
    assert highest_severity({}, "error") == "error"


def test_coalesce_merges_alert_updates_of_one_incident() -> None:
    world = World(RULES)
    for name in "ABCD":
        apply_alert(world, change(name))
    merged = coalesce_events(world.events)
    assert [e.change for e in merged] == ["opened", "alerts_added"]
    assert [a["alertname"] for a in merged[1].detail["alerts"]] == ["B", "C", "D"]
    assert merged[1].snapshot.alert_count == 4
    assert coalesce_events([]) == []
    assert all(isinstance(e, EventOut) for e in merged)


# --- properties -------------------------------------------------------------------------------------

changes = st.builds(
    change,
    alertname=st.sampled_from(["A", "B", "C"]),
    host=st.sampled_from(["web-1", "web-2"]),
    status=st.sampled_from(["firing", "firing", "resolved"]),
    severity=st.sampled_from(["critical", "warning", "info"]),
    starts=st.sampled_from([0, 30, 120, 300]),
    seen=st.integers(min_value=0, max_value=400),
)


def run(messages: list[AlertChange]) -> World:
    world = World(RULES)
    for m in messages:
        apply_alert(world, m)
    return world


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=25))
def test_applying_each_message_twice_is_applying_it_once(messages: list[AlertChange]) -> None:
    assert state(run([m for m in messages for _ in (0, 1)])) == state(run(messages))


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=25))
def test_redelivering_everything_later_changes_nothing(messages: list[AlertChange]) -> None:
    world = run(messages)
    before = state(world)
    for m in messages:
        apply_alert(world, m)
    assert state(world) == before


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, max_size=30))
def test_counters_match_the_alerts(messages: list[AlertChange]) -> None:
    world = run(messages)
    by_incident: dict[int, list[Any]] = {}
    for alert in world.alerts.values():
        by_incident.setdefault(alert.incident_id, []).append(alert)
    unresolved = Counter(i.group_key for i in world.incidents.values() if i.state != "resolved")
    assert all(n == 1 for n in unresolved.values())
    for inc in world.incidents.values():
        alerts = by_incident.get(inc.id, [])
        firing = [a for a in alerts if a.status == "firing"]
        assert inc.alert_count == len(alerts)
        assert inc.firing_count == len(firing)
        assert inc.firing_severities == dict(Counter(a.severity for a in firing))
        if firing:
            assert inc.severity == highest_severity(Counter(a.severity for a in firing), "none")
        revisions = [e.snapshot.revision for e in world.events if e.incident_id == inc.id]
        assert revisions == sorted(revisions)
    for e in world.events:  # snapshots are built without validation: they must still be valid
        IncidentSnapshot.model_validate(e.snapshot.model_dump())


def test_notifications_of_each_occurrence_are_counted_once_each() -> None:
    world = World(RULES)
    apply_alert(world, change(seen=1))
    apply_alert(world, change(seen=1))  # the same notification again (a redelivery): nothing new
    apply_alert(world, change(seen=5))
    apply_alert(world, change(seen=3))  # older than the newest, but a notification all the same
    apply_alert(world, change(status="resolved", seen=9))
    apply_alert(world, change("B", seen=2))
    other = dataclasses.replace(change(seen=7), sender="someone-else")
    assert apply_alert(world, other) == "foreign_sender"  # refused: not this occurrence's notification
    hostdown, b = (change().fingerprint, change("B").fingerprint)
    assert world.notified == {(hostdown, T0): 4, (b, T0): 1}
