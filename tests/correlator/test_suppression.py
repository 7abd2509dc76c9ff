"""Pure tests of Alertmanager's silences and inhibitions in the correlation core (lifecycle.set_suppression), and of
merging several Alertmanagers' answers (silences.merge)."""

from __future__ import annotations

from datetime import timedelta

from services.correlator.lifecycle import (
    Silence,
    StoredAlert,
    Suppression,
    World,
    apply_alert,
    apply_command,
    auto_resolve,
    mark_stale,
    set_suppression,
)
from services.correlator.silences import Observed, merge
from shared.contracts import IncidentCommand
from tests.correlator.test_correlator_lifecycle import RULES, T0, change, only

SILENCE = Silence("s-1", "bob", "maintenance of web-1", T0 + timedelta(hours=8))
SILENCES = {SILENCE.id: SILENCE}
STALE_AFTER = RULES.defaults.stale_after


def firing_world() -> tuple[World, StoredAlert]:
    world = World(RULES)
    apply_alert(world, change())
    [alert] = world.alerts.values()
    world.timeline.clear()
    world.events.clear()
    return world, alert


def test_silenced_alert_never_goes_stale_while_suppression_is_trusted() -> None:
    world, alert = firing_world()
    assert set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + timedelta(minutes=1))
    assert (alert.suppressed, alert.silenced_by, alert.suppressed_until) == ("silenced", ["s-1"], SILENCE.ends_at)
    assert [t.kind for t in world.timeline] == ["alert_silenced"]
    assert world.timeline[0].detail["silences"] == [{"id": "s-1", "created_by": "bob", "comment": SILENCE.comment}]
    assert [e.change for e in world.events] == ["alert_silenced"]
    later = T0 + STALE_AFTER * 3
    assert not mark_stale(world, alert, later, suppression_trusted=True)
    assert not auto_resolve(world, only(world), later)
    assert alert.status == "firing" and only(world).state == "open"
    # An Alertmanager that stopped answering is not believed forever: then the stale rule applies.
    assert mark_stale(world, alert, later, suppression_trusted=False)


def test_same_answer_changes_nothing() -> None:
    world, alert = firing_world()
    set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0)
    revision = only(world).revision
    assert not set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + timedelta(seconds=5))
    assert only(world).revision == revision


def test_silence_ends_and_the_alert_is_ordinary_again_counting_from_the_poll() -> None:
    world, alert = firing_world()
    set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0)
    ended = T0 + timedelta(hours=9)
    assert set_suppression(world, alert, Suppression(), SILENCES, ended)
    assert (alert.suppressed, alert.silenced_by, alert.suppressed_until) == (None, [], None)
    assert alert.last_seen_at == ended  # the poll saw it active: stale counts from here
    assert [t.kind for t in world.timeline][-1] == "alert_unsilenced"
    assert not mark_stale(world, alert, ended + timedelta(minutes=1), suppression_trusted=True)
    assert mark_stale(world, alert, ended + STALE_AFTER, suppression_trusted=True)


def test_alert_gone_from_alertmanager_keeps_its_last_seen() -> None:
    world, alert = firing_world()
    set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0)
    seen = alert.last_seen_at
    set_suppression(world, alert, Suppression(present=False), SILENCES, T0 + timedelta(hours=9))
    assert alert.suppressed is None and alert.last_seen_at == seen


def test_inhibited_alert_has_no_end() -> None:
    world, alert = firing_world()
    assert set_suppression(world, alert, Suppression(inhibited_by=("fp-source",)), SILENCES, T0)
    assert (alert.suppressed, alert.inhibited_by, alert.suppressed_until) == ("inhibited", ["fp-source"], None)
    assert only(world).state == "open"  # an inhibition acknowledges nothing


def test_stale_alert_still_held_back_is_firing_again() -> None:
    world, alert = firing_world()
    assert mark_stale(world, alert, T0 + STALE_AFTER * 2)
    assert only(world).firing_count == 0
    assert set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + STALE_AFTER * 2 + timedelta(seconds=5))
    assert alert.status == "firing" and only(world).firing_count == 1 and not only(world).flapping


def test_resolved_alert_is_left_alone() -> None:
    world, alert = firing_world()
    apply_alert(world, change(status="resolved", seen=10))
    assert not set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + timedelta(minutes=11))


def test_silence_acknowledges_an_open_incident_when_asked() -> None:
    world, alert = firing_world()
    set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + timedelta(minutes=2), acknowledges=True)
    inc = only(world)
    assert (inc.state, inc.acknowledged_by, inc.acknowledged_at) == ("acknowledged", "bob", T0 + timedelta(minutes=2))
    [ack] = [t for t in world.timeline if t.kind == "incident_acknowledged"]
    assert ack.actor == "bob" and ack.detail == {"via": "silence", "silence_id": "s-1", "comment": SILENCE.comment}
    # Without the setting, the incident stays open.
    world, alert = firing_world()
    set_suppression(world, alert, Suppression(("s-1",)), SILENCES, T0 + timedelta(minutes=2))
    assert only(world).state == "open"


def test_silence_command_is_recorded() -> None:
    world, _ = firing_world()
    inc = only(world)
    inc.key = "INC-000001"
    cmd = IncidentCommand(
        key=inc.key,
        action="silence",
        actor="alice",
        comment="deploy",
        silence_id="s-9",
        until=T0 + timedelta(hours=2),
        requested_at=T0,
    )
    assert apply_command(world, inc, cmd) == "applied"
    [entry] = world.timeline
    assert (entry.kind, entry.actor) == ("alert_silenced", "alice")
    assert entry.detail == {
        "silence_id": "s-9",
        "via": "vigil",
        "until": "2026-11-02T12:00:00+00:00",
        "comment": "deploy",
    }
    cmd = cmd.model_copy(update={"action": "unsilence", "comment": ""})
    apply_command(world, inc, cmd)
    assert world.timeline[-1].kind == "alert_unsilenced" and world.timeline[-1].detail["silence_id"] == "s-9"


def test_merge_of_an_ha_pair() -> None:
    observed = Observed()
    silence = {
        "id": "s-1",
        "status": {"state": "active"},
        "matchers": [{"name": "instance", "value": "web-1:9100", "isRegex": False, "isEqual": True}],
        "startsAt": "2026-11-02T10:00:00.000Z",
        "endsAt": "2026-11-02T12:00:00.000Z",
        "createdBy": "bob",
        "comment": "why",
    }
    merge(
        observed,
        "http://am1",
        [{"fingerprint": "f1", "status": {"state": "suppressed", "silencedBy": ["s-1"], "inhibitedBy": []}}],
        [silence],
    )
    merge(
        observed,
        "http://am2",
        [
            {"fingerprint": "f1", "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}},
            {"fingerprint": "f2", "status": {"state": "suppressed", "silencedBy": [], "inhibitedBy": ["f1"]}},
            {"fingerprint": "f3", "status": {"state": "active", "silencedBy": None, "inhibitedBy": None}},
        ],
        [silence, {"id": "broken"}],
    )
    assert observed.alerts == {
        "f1": Suppression(("s-1",)),
        "f2": Suppression(inhibited_by=("f1",)),
        "f3": Suppression(),
    }
    assert list(observed.silences) == ["s-1"] and observed.silence_rows["s-1"]["source"] == "http://am1"
    assert observed.silences["s-1"].ends_at == T0 + timedelta(hours=2)
    assert observed.answered == ["http://am1", "http://am2"]
