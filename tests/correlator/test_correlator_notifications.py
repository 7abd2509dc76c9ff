"""alerts.notifications: every notification of an occurrence, counted by the correlator (the audit's noise funnel),
through the real pipeline: messages through the broker one at a time, and batches handed to correlate_batch as a lane
would (several repeats of one alert in one batch, a redelivery, a notification overtaken by a newer one)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from services.correlator.app import RULES
from services.correlator.batches import correlate_batch
from shared.config import Settings
from shared.contracts import RawEnvelope
from shared.messaging import Delivery
from shared.service import DB
from tests.correlator.harness import T0, Harness, alert_envelope, correlator


def delivery(env: Any) -> Delivery:
    """A delivery as a consumer lane hands it over (no broker message: correlate_batch does not settle)."""
    return Delivery(RawEnvelope.model_validate_json(env.model_dump_json(by_alias=True)), None, 0)  # type: ignore[arg-type]


async def batch(h: Harness, *envelopes: Any) -> None:
    await correlate_batch(h.app[DB], h.app[RULES], [delivery(e) for e in envelopes])


async def counts(h: Harness) -> list[tuple[str, int]]:
    rows = await h.query("SELECT alertname, notifications FROM alerts ORDER BY id")
    return [(r["alertname"], r["notifications"]) for r in rows]


def at(seconds: float) -> Any:
    return T0 + timedelta(seconds=seconds)


async def test_each_notification_sent_through_the_broker_is_counted(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send_in_order(*(alert_envelope(received_at=at(30 + 300 * n)) for n in range(3)))
        three = await counts(h)
        resolve = alert_envelope(status="resolved", received_at=at(1000))
        await h.send_in_order(resolve)
        resolved = await counts(h)
        [alert] = await h.query("SELECT status, last_seen_at FROM alerts")
    assert three == [("HostDown", 3)]
    assert resolved == [("HostDown", 4)] and alert["status"] == "resolved" and alert["last_seen_at"] == at(1000)


async def test_repeats_within_one_batch_all_count_and_a_redelivery_does_not(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        first, second, third = (alert_envelope(received_at=at(30 + 60 * n)) for n in range(3))
        # A new occurrence and two repeats of it in one batch: one row written, counted 3.
        await batch(h, first, second, third)
        in_one_batch = await counts(h)
        # The broker delivering the batch's last message again (its batch committed, the acknowledgement was lost):
        # the same notification, not a new one.
        await batch(h, third)
        redelivered = await counts(h)
        # Two lanes: a newer notification committed first, an older one after it. Both are notifications.
        await batch(h, alert_envelope(received_at=at(600)))
        await batch(h, alert_envelope(received_at=at(500)))
        overtaken = await counts(h)
        # A batch with a repeat and the resolve of it: both count, written by one upsert.
        await batch(h, alert_envelope(received_at=at(700)), alert_envelope(status="resolved", received_at=at(800)))
        resolved = await counts(h)
        [alert] = await h.query("SELECT status, first_seen_at, last_seen_at FROM alerts")
    assert in_one_batch == [("HostDown", 3)]
    assert redelivered == [("HostDown", 3)]
    assert overtaken == [("HostDown", 5)]
    assert resolved == [("HostDown", 7)]
    assert (alert["status"], alert["first_seen_at"], alert["last_seen_at"]) == ("resolved", at(30), at(800))


async def test_occurrences_count_apart_and_held_back_groups_count_too(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        # Two warnings on web-2: rule `warnings` holds the group back until 3 alerts (min_alerts), never announced.
        disk = [alert_envelope("DiskSlow", "web-2", severity="warning", received_at=at(30 + n)) for n in range(4)]
        cpu = [alert_envelope("CpuHigh", "web-2", severity="warning", received_at=at(40 + n)) for n in range(2)]
        await batch(h, disk[0], cpu[0], disk[1])
        await batch(h, disk[2], cpu[1], disk[3])
        # The same alert firing again later is a new occurrence (a new startsAt), counted from 1.
        await batch(h, alert_envelope(received_at=at(30)), alert_envelope(received_at=at(90)))
        await batch(h, alert_envelope(starts_at=at(3600), received_at=at(3630)))
        rows = await h.query("SELECT alertname, starts_at, notifications FROM alerts ORDER BY alertname, starts_at")
        incidents = {i["rule"]: i for i in await h.incidents()}
    assert [(r["alertname"], r["starts_at"], r["notifications"]) for r in rows] == [
        ("CpuHigh", T0, 2),
        ("DiskSlow", T0, 4),
        ("HostDown", T0, 2),
        ("HostDown", at(3600), 1),
    ]
    held = incidents["warnings"]
    assert held["announced"] is False and held["alert_count"] == 2 and held["min_alerts"] == 3
