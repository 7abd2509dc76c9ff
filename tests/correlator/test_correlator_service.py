"""The correlator against the real PostgreSQL and RabbitMQ: alerts in as ingest publishes them, incidents
and timeline read from the database, incident events read from a queue bound to vigil.incidents."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest

from services.correlator.app import CONCURRENCY, RULES, build_app
from services.correlator.batches import correlate_batch, sweep
from services.correlator.outbox import publish_rows
from shared.asyncapi import asyncapi_document
from shared.config import ConfigError, Settings
from shared.contracts import (
    AlertReceived,
    Envelope,
    IncidentEvent,
)
from shared.service import BROKER, DB
from tests.conftest import running
from tests.correlator.harness import (
    T0,
    Harness,
    alert_envelope,
    always_true,
    command_envelope,
    correlator,
    count_is,
    notification,
    rules_file,
    wait_ready,
)

# --- tests -----------------------------------------------------------------------------------------


async def test_alert_opens_incident_and_repeats_change_nothing(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        first = alert_envelope(annotations={"summary": "node exporter <b>unreachable</b>"})
        await h.send(first)
        await h.settled(await count_is(h, 1))
        [inc] = await h.incidents()
        # The same message delivered again, a repeat notification, and a second Alertmanager's copy.
        await h.send(first, alert_envelope(received_at=T0 + timedelta(minutes=5)), alert_envelope())
        await h.settled(await count_is(h, 1))
        [again] = await h.incidents()
        events = await h.events()
        alerts = await h.query("SELECT * FROM alerts")
    assert inc["key"] == "INC-000001" and inc["state"] == "open" and inc["announced"]
    assert inc["title"] == "HostDown on web-1: node exporter <b>unreachable</b>"
    assert inc["severity"] == "critical" and inc["hosts"] == ["web-1"] and inc["group_labels"] == {"host": "web-1"}
    assert again["revision"] == inc["revision"] and again["alert_count"] == 1
    assert len(alerts) == 1 and alerts[0]["last_seen_at"] == T0 + timedelta(minutes=5)
    assert [e["type"] for e in events] == ["incident.opened"]
    assert events[0]["routing_key"] == "incident.opened.critical"
    assert events[0]["data"]["incident"]["key"] == "INC-000001"
    # What subscribers get validates against the published contract.
    assert IncidentEvent.model_validate(events[0]["data"]).incident.revision == inc["revision"]


async def test_severity_follows_firing_alerts_and_incident_resolves_after_grace(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h:
        # One at a time: two batches in flight may apply messages sent together in either order.
        await h.send(alert_envelope())
        await h.settled(lambda: _firing_is(h, 1))
        await h.send(alert_envelope("DiskFull", severity="error"))
        await h.settled(lambda: _firing_is(h, 2))
        resolved_at = T0 + timedelta(minutes=10)
        await h.send(alert_envelope(status="resolved", received_at=resolved_at))
        await h.settled(lambda: _firing_is(h, 1))
        [inc] = await h.incidents()
        await h.send(alert_envelope("DiskFull", severity="error", status="resolved", received_at=resolved_at))
        await h.settled(lambda: _firing_is(h, 0))
        await h.sweep(resolved_at + timedelta(minutes=4))  # within the grace period: still open
        [still] = await h.incidents()
        await h.sweep(resolved_at + timedelta(minutes=6))
        [done] = await h.incidents()
        kinds = await h.timeline(done["key"])
        events = await h.events()
    assert inc["severity"] == "error" and inc["alert_count"] == 2 and inc["firing_count"] == 1
    assert still["state"] == "open"
    assert done["state"] == "resolved" and done["resolved_by"] == "correlator"
    assert done["resolved_at"] == resolved_at + timedelta(minutes=6)
    assert kinds == [
        "incident_opened",
        "alert_added",
        "alert_added",
        "alert_resolved",
        "severity_changed",
        "alert_resolved",
        "incident_resolved",
    ]
    changes = [(e["type"], e["data"]["change"], e["routing_key"]) for e in events]
    assert changes == [
        ("incident.opened", "opened", "incident.opened.critical"),
        ("incident.updated", "alerts_added", "incident.updated.critical"),
        ("incident.updated", "severity_changed", "incident.updated.error"),
        ("incident.updated", "alert_resolved", "incident.updated.error"),
        ("incident.updated", "alert_resolved", "incident.updated.error"),
        ("incident.resolved", "resolved", "incident.resolved.error"),
    ]
    assert [e["data"]["incident"]["revision"] for e in events] == sorted(
        e["data"]["incident"]["revision"] for e in events
    )


async def _firing_is(h: Harness, n: int) -> bool:
    rows = await h.query("SELECT sum(firing_count) AS n FROM incidents WHERE rule = 'default'")
    return rows[0]["n"] == n


async def test_resolved_before_firing_ends_resolved_and_late_firing_changes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h:
        resolved_at = T0 + timedelta(minutes=3)
        await h.send(alert_envelope(status="resolved", received_at=resolved_at))
        await h.settled(await count_is(h, 1))
        await h.send(alert_envelope(received_at=resolved_at + timedelta(seconds=1)))  # the firing, delivered late
        await h.settled(await count_is(h, 1))
        [before] = await h.incidents()
        await h.sweep(resolved_at + timedelta(minutes=6))
        [inc] = await h.incidents()
        [alert] = await h.query("SELECT * FROM alerts")
    assert alert["status"] == "resolved" and alert["incident_id"] == inc["id"]
    assert before["firing_count"] == 0 and before["state"] == "open"
    assert inc["state"] == "resolved" and inc["alert_count"] == 1


async def test_lost_resolve_ends_as_stale_then_resolved(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        last_seen = T0 + timedelta(hours=4)
        await h.send(alert_envelope(), alert_envelope(received_at=last_seen))
        await h.settled(await count_is(h, 1))
        await h.sweep(last_seen + timedelta(hours=5))  # stale_after is 6h: not yet
        [alert_before] = await h.query("SELECT status FROM alerts")
        stale_at = last_seen + timedelta(hours=6, minutes=1)
        await h.sweep(stale_at)
        [marked] = await h.incidents()
        await h.sweep(stale_at + timedelta(minutes=6))
        [inc] = await h.incidents()
        [alert] = await h.query("SELECT status FROM alerts")
        kinds = await h.timeline(inc["key"])
        events = [(e["type"], e["data"]["change"]) for e in await h.events()]
    assert alert_before["status"] == "firing"
    assert marked["state"] == "open" and marked["firing_count"] == 0
    assert alert["status"] == "stale" and inc["state"] == "resolved"
    assert kinds == ["incident_opened", "alert_added", "alert_stale", "incident_resolved"]
    assert events == [
        ("incident.opened", "opened"),
        ("incident.updated", "alert_stale"),
        ("incident.resolved", "resolved"),
    ]


async def flap(h: Harness) -> datetime:
    """HostDown on web-1 fires and resolves four times, two minutes apart; returns its last resolve."""
    for cycle in range(4):
        starts = T0 + timedelta(minutes=4 * cycle)
        await h.send_in_order(
            alert_envelope(starts_at=starts, received_at=starts),
            alert_envelope(starts_at=starts, status="resolved", received_at=starts + timedelta(minutes=2)),
        )
    return starts + timedelta(minutes=2)


async def test_flapping_alert_is_one_incident_marked_flapping(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        t = await flap(h)
        await h.settled(await count_is(h, 4))
        # Grace has passed since the last resolve, but a flapping incident does not resolve itself.
        await h.sweep(t + timedelta(minutes=6))
        [inc] = await h.incidents()
        # Once it calms down (no switches within the flapping window), it ends like any other.
        await h.sweep(t + timedelta(minutes=40))
        await h.sweep(t + timedelta(minutes=46))
        [calm] = await h.incidents()
        kinds = await h.timeline(inc["key"])
        changes = [e["data"]["change"] for e in await h.events()]
    assert inc["flapping"] and inc["state"] == "open" and inc["alert_count"] == 4
    assert kinds.count("flapping_started") == 1 and kinds.count("alert_refired") == 3
    assert calm["state"] == "resolved" and not calm["flapping"]
    assert "flapping_started" in changes and "flapping_stopped" in changes
    assert changes[-1] == "resolved"


async def test_incidents_still_flapping_never_keep_a_quiet_one_from_resolving(
    settings: Settings, tmp_path: Path
) -> None:
    # web-1 flaps (and goes on flapping); web-2 fired once and went quiet. A sweep takes at most `limit` incidents:
    # one that would not change is no candidate, so the quiet incident resolves even with the limit at one.
    async with correlator(settings, tmp_path) as h:
        t = await flap(h)
        await h.send_in_order(
            alert_envelope(host="web-2", starts_at=t, received_at=t),
            alert_envelope(host="web-2", starts_at=t, status="resolved", received_at=t + timedelta(minutes=1)),
        )
        await h.settled(await count_is(h, 5))
        await sweep(h.app[DB], h.app[RULES], t + timedelta(minutes=7), limit=1)
        flapping, quiet = sorted(await h.incidents(), key=lambda i: i["id"])
    assert flapping["hosts"] == ["web-1"] and flapping["flapping"] and flapping["state"] == "open"
    assert quiet["hosts"] == ["web-2"] and quiet["state"] == "resolved"


async def test_min_alerts_holds_back_the_announcement(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        warnings = [alert_envelope(f"Warn{i}", severity="warning") for i in range(3)]
        await h.send(*warnings[:2])
        await h.settled(await count_is(h, 2))
        quiet = await h.events()
        [held] = await h.incidents()
        await h.send(warnings[2])
        await h.settled(await count_is(h, 3))
        events = await h.events()
        [inc] = await h.incidents()
    assert quiet == [] and not held["announced"] and held["rule"] == "warnings"
    assert inc["announced"] and inc["alert_count"] == 3
    assert [e["type"] for e in events] == ["incident.opened"]
    assert events[0]["data"]["incident"]["title"] == "Warn0 and other warnings on web-1"


async def test_matchers_and_group_by_route_generic_events(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:

        def ban(host: str, jail: str, ip: str) -> Envelope[AlertReceived]:
            labels = {"source": "fail2ban", "jail": jail, "ip": ip, "host": host}
            env = alert_envelope("ban", host, severity="warning", labels=labels)
            alert = env.data.alert.model_copy(
                update={"labels": {k: v for k, v in env.data.alert.labels.items() if k != "instance"}}
            )
            return Envelope(type=env.type, producer="ingest", data=env.data.model_copy(update={"alert": alert}))

        await h.send(ban("web-1", "sshd", "203.0.113.5"), ban("web-2", "sshd", "203.0.113.6"))
        await h.send(ban("web-1", "nginx", "203.0.113.7"))
        await h.settled(await count_is(h, 3))
        incidents = await h.incidents()
        alerts = await h.query("SELECT fingerprint, host FROM alerts ORDER BY id")
    by_jail = {i["group_labels"]["jail"]: i for i in incidents}
    assert sorted(by_jail) == ["nginx", "sshd"]
    assert by_jail["sshd"]["alert_count"] == 2 and sorted(by_jail["sshd"]["hosts"]) == ["web-1", "web-2"]
    assert by_jail["sshd"]["title"] == "fail2ban bans in sshd" and by_jail["sshd"]["rule"] == "fail2ban"
    # Generic events have no fingerprint: the Alertmanager-style label hash stands in, one per label set.
    assert len({a["fingerprint"] for a in alerts}) == 3 and all(len(a["fingerprint"]) == 16 for a in alerts)


async def test_window_and_reopen_window(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        # Resolved, then the host fires again 20 minutes later: the same incident is reopened.
        await h.send_in_order(
            alert_envelope(), alert_envelope(status="resolved", received_at=T0 + timedelta(minutes=5))
        )
        await h.settled(await count_is(h, 1))
        await h.sweep(T0 + timedelta(minutes=11))
        t2 = T0 + timedelta(minutes=30)
        await h.send(alert_envelope("DiskFull", starts_at=t2, received_at=t2))
        await h.settled(await count_is(h, 2))
        [reopened] = await h.incidents()
        await h.send(alert_envelope("DiskFull", starts_at=t2, status="resolved", received_at=t2))
        await h.settled(lambda: _firing_is(h, 0))
        await h.sweep(t2 + timedelta(minutes=6))
        # An hour after that resolve: beyond the reopen window, a new incident with a new key.
        t3 = t2 + timedelta(hours=1, minutes=6)
        await h.send(alert_envelope("Load", starts_at=t3, received_at=t3))
        await h.settled(await count_is(h, 3))
        first, second = await h.incidents()
        kinds = await h.timeline(first["key"])
        types = [e["type"] for e in await h.events()]
    assert reopened["state"] == "open" and reopened["alert_count"] == 2 and reopened["resolved_at"] is None
    assert kinds.count("incident_reopened") == 1 and kinds.count("incident_resolved") == 2
    assert first["state"] == "resolved" and second["state"] == "open"
    assert (first["key"], second["key"]) == ("INC-000001", "INC-000002")
    assert types.count("incident.reopened") == 1 and types.count("incident.opened") == 2


async def test_alert_after_a_quiet_window_opens_a_new_incident(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send_in_order(
            alert_envelope(), alert_envelope(status="resolved", received_at=T0 + timedelta(minutes=1))
        )
        await h.settled(await count_is(h, 1))
        # No sweep ran (grace not applied), and the group was quiet for longer than the 1h window.
        later = T0 + timedelta(hours=2)
        await h.send(alert_envelope("DiskFull", starts_at=later, received_at=later))
        await h.settled(await count_is(h, 2))
        old, new = await h.incidents()
        kinds = await h.timeline(old["key"])
    assert old["state"] == "resolved" and new["state"] == "open" and new["alert_count"] == 1
    assert kinds[-1] == "incident_resolved"


async def test_commands_acknowledge_comment_resolve_reopen(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send(alert_envelope())
        await h.settled(await count_is(h, 1))
        ack = command_envelope("INC-000001", "acknowledge", "alice")
        comment = command_envelope("INC-000001", "comment", "bob", "looking at <script>disk</script>")
        await h.send_in_order(ack, ack, comment, comment)  # each delivered twice
        await h.send_in_order(command_envelope("INC-000001", "resolve", "alice", "fixed"))
        await h.send_in_order(command_envelope("INC-000001", "reopen", "carol"))
        await h.settled(lambda: _incident_state(h, "open", acknowledged=False))
        [inc] = await h.incidents()
        timeline = await h.query(
            "SELECT kind, actor, detail FROM incident_timeline WHERE incident_id = %s ORDER BY id", inc["id"]
        )
        events = [(e["type"], e["data"]["actor"]) for e in await h.events()]
    assert [(t["kind"], t["actor"]) for t in timeline] == [
        ("incident_opened", None),
        ("alert_added", None),
        ("incident_acknowledged", "alice"),
        ("comment", "bob"),
        ("incident_resolved", "alice"),
        ("incident_reopened", "carol"),
    ]
    assert timeline[3]["detail"] == {"comment": "looking at <script>disk</script>"}
    assert events == [
        ("incident.opened", None),
        ("incident.acknowledged", "alice"),
        ("incident.updated", "bob"),
        ("incident.resolved", "alice"),
        ("incident.reopened", "carol"),
    ]


async def test_command_for_unknown_incident_is_parked(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send(command_envelope("INC-999999", "acknowledge"))
        await h.settled(lambda: always_true())
        async with await aio_pika.connect(settings.amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.get_queue("vigil.correlator.parking")
            parked = await queue.get(fail=False, no_ack=True)
    assert parked is not None
    assert "INC-999999" in str(parked.headers["x-vigil-error"])


async def test_alerts_of_one_notification_are_stored_and_one_at_fault_fails_alone(
    settings: Settings, tmp_path: Path
) -> None:
    # The middle alert carries a NUL, which PostgreSQL refuses (ingest turns such an alert away at the door; a message
    # may come from elsewhere). The notification fails as a whole, comes apart, and only that alert is parked; the
    # other two and the next notification are stored.
    async with correlator(settings, tmp_path) as h:
        bad = alert_envelope(host="web-2", labels={"note": "a\x00b"})
        await h.send(notification(alert_envelope(host="web-1"), bad, alert_envelope(host="web-3")))
        await h.send(notification(alert_envelope(host="web-4"), alert_envelope("DiskFull", host="web-4")))
        await h.settled(await count_is(h, 4))
        async with await aio_pika.connect(settings.amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.get_queue("vigil.correlator.parking")
            async with asyncio.timeout(10):
                while (parked := await queue.get(fail=False, no_ack=True)) is None:
                    await asyncio.sleep(0.1)
            left = await queue.get(fail=False, no_ack=True)
        rows = await h.query("SELECT host, alertname FROM alerts ORDER BY host, alertname")
    assert [(r["host"], r["alertname"]) for r in rows] == [
        ("web-1", "HostDown"),
        ("web-3", "HostDown"),
        ("web-4", "DiskFull"),
        ("web-4", "HostDown"),
    ]
    body = json.loads(parked.body)
    assert body["type"] == "alerts.received" and [a["alert"]["labels"]["note"] for a in body["data"]["alerts"]] == [
        "a\x00b"
    ]
    assert left is None  # the alert at fault alone, not its notification


async def test_asyncapi_and_metrics_are_served(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send(alert_envelope())
        await h.settled(await count_is(h, 1))
        await h.events()
        async with httpx.AsyncClient() as client:
            doc = (await client.get(f"{h.url}/asyncapi.json")).json()
            metrics = (await client.get(f"{h.url}/metrics")).text
    assert doc == asyncapi_document()
    assert 'vigil_incidents_total{event="incident.opened"}' in metrics
    assert 'vigil_correlator_alerts_total{outcome="new"}' in metrics


async def _incident_state(h: Harness, state: str, *, acknowledged: bool) -> bool:
    rows = await h.incidents()
    return bool(rows) and rows[0]["state"] == state and (rows[0]["acknowledged_at"] is not None) == acknowledged


async def test_two_correlators_on_one_queue_make_the_incidents_one_would(settings: Settings, tmp_path: Path) -> None:
    import random

    hosts = [f"node-{i}" for i in range(12)]
    firing = [
        alert_envelope(f"Alert{j}", host, starts_at=T0 + timedelta(seconds=j), received_at=T0 + timedelta(minutes=1))
        for j in range(10)
        for host in hosts
    ]
    repeats = [
        alert_envelope(f"Alert{j}", host, starts_at=T0 + timedelta(seconds=j), received_at=T0 + timedelta(minutes=2))
        for j in range(10)
        for host in hosts
    ]
    resolves = [
        alert_envelope(
            f"Alert{j}",
            host,
            starts_at=T0 + timedelta(seconds=j),
            status="resolved",
            received_at=T0 + timedelta(minutes=3),
        )
        for j in range(4)
        for host in hosts
    ]
    messages = firing + repeats + resolves + firing[:30]  # and some duplicates
    random.Random(7).shuffle(messages)

    second_settings = settings.model_copy(update={"correlator_port": settings.correlator_port + 1})
    async with correlator(settings, tmp_path) as h:
        second = build_app(
            second_settings.model_copy(update={"correlation_rules": h.settings.correlation_rules}),
            sweep_interval_s=3600,
        )
        async with running(second, second_settings.correlator_port) as url2:
            await wait_ready(url2)
            async with await aio_pika.connect(settings.amqp_url) as conn:
                queue = await (await conn.channel()).declare_queue("vigil.correlator", passive=True)
                consumers = queue.declaration_result.consumer_count
            await h.send(*messages)
            await h.settled(await count_is(h, len(firing)), timeout=120)
            incidents = await h.incidents()
            alerts = await h.query("SELECT fingerprint, starts_at, status, incident_id FROM alerts")
            added = await h.query(
                "SELECT incident_id, count(*) AS n FROM incident_timeline"
                " WHERE kind = 'alert_added' GROUP BY incident_id"
            )
            events = await h.events()
    assert consumers == 2 * CONCURRENCY  # two processes, each consuming on its lanes
    assert len(incidents) == len(hosts)
    assert sorted(i["key"] for i in incidents) == [f"INC-{n:06d}" for n in range(1, len(hosts) + 1)]
    assert {i["group_labels"]["host"] for i in incidents} == set(hosts)
    for inc in incidents:
        assert (inc["alert_count"], inc["firing_count"], inc["state"]) == (10, 6, "open"), inc["key"]
    assert len(alerts) == len({(a["fingerprint"], a["starts_at"]) for a in alerts}) == len(firing)
    assert sum(a["status"] == "resolved" for a in alerts) == len(resolves)
    assert all(r["n"] == 10 for r in added) and len(added) == len(hosts)
    opened = [e for e in events if e["type"] == "incident.opened"]
    assert sorted(e["data"]["incident"]["key"] for e in opened) == sorted(i["key"] for i in incidents)


async def test_events_committed_but_not_published_are_published_later_once(settings: Settings, tmp_path: Path) -> None:
    """A crash between commit and publish: the rows wait in the outbox and the drainer publishes them."""
    from shared.contracts import RawEnvelope
    from shared.messaging import Delivery

    async with correlator(settings, tmp_path) as h:
        env = alert_envelope()
        delivery = Delivery(RawEnvelope.model_validate_json(env.model_dump_json(by_alias=True)), None, 0)  # type: ignore[arg-type]
        ids = await correlate_batch(h.app[DB], h.app[RULES], [delivery])  # committed; publishing "crashed"
        assert await h.events(wait=0.2) == []
        await h.query("UPDATE outbox SET created_at = now() - interval '1 minute' RETURNING id")
        first = await publish_rows(h.app[DB], h.app[BROKER])
        second = await publish_rows(h.app[DB], h.app[BROKER])
        events = await h.events()
        pending = await h.query("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    # Two rows: the incident event and the enricher's request. (The service's own drainer may win the race to publish
    # either; whoever does, exactly one event goes out.)
    assert len(ids) == 2 and second == 0 and first in (0, 1, 2)
    assert [e["type"] for e in events] == ["incident.opened"] and pending[0]["n"] == 0


def test_invalid_rules_stop_the_service_at_start_naming_rule_and_field(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = rules_file(tmp_path, "rules:\n  - name: db\n    matchers: ['severity=~\"(\"']\n")
    with pytest.raises(ConfigError):
        build_app(settings.model_copy(update={"correlation_rules": bad}))
    err = capsys.readouterr().err
    assert "VIGIL_CORRELATION_RULES" in err and "rule 'db': matchers: error parsing regexp" in err


async def test_a_known_alert_stays_with_its_incident_after_the_rules_change(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send(alert_envelope())
        await h.settled(await count_is(h, 1))
    by_alertname = "rules:\n  - name: by-alert\n    group_by: [alertname]\n"
    async with correlator(settings, tmp_path, rules=by_alertname) as h:
        await h.send(alert_envelope(status="resolved", received_at=T0 + timedelta(minutes=5)))
        await h.settled(lambda: _firing_is(h, 0))
        await h.send(alert_envelope("DiskFull"))
        await h.settled(await count_is(h, 2))
        old, new = await h.incidents()
    assert old["rule"] == "default" and old["alert_count"] == 1 and old["firing_count"] == 0
    assert new["rule"] == "by-alert" and new["group_labels"] == {"alertname": "DiskFull"}
