"""Silences and inhibitions against Debian's real Alertmanager: the correlator polls it, shows what it holds back on
the alerts Vigil has, and never marks those stale while it lasts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.alertmanager import Alertmanager, alertmanager_available
from shared.config import Settings
from shared.fingerprint import label_fingerprint
from shared.readmodel import incidents as readmodel
from tests.alertmanagers import running_alertmanager
from tests.correlator.harness import Harness, alert_envelope, correlator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not alertmanager_available(), reason="apt-get install prometheus-alertmanager"),
]

# A tiny stale_after: without the silence, one sweep a minute later would make the alert stale.
RULES = """
defaults:
  window: 1h
  reopen_window: 30m
  resolve_grace: 1s
  stale_after: 5s
rules:
  - name: default
    group_by: [$host]
    title: "{{ alertname }} on {{ host }}"
"""

AM_CONFIG = """
route:
  receiver: blackhole
  group_by: [alertname, instance]
receivers:
  - name: blackhole
inhibit_rules:
  - source_matchers: ['alertname="SiteDown"']
    target_matchers: ['severity="warning"']
    equal: [instance]
"""


@pytest.fixture
async def manager() -> AsyncIterator[Alertmanager]:
    async with running_alertmanager(AM_CONFIG) as am:
        yield am


def labels(alertname: str, host: str, severity: str = "critical") -> dict[str, str]:
    # What tests.correlator.harness.alert_envelope sends, so Alertmanager's fingerprint is Vigil's.
    return {"alertname": alertname, "severity": severity, "instance": f"{host}:9100"}


async def fire(h: Harness, am: Alertmanager, alertname: str, host: str, severity: str, at: datetime) -> str:
    """The alert in Alertmanager (firing for an hour) and in Vigil (as its webhook would deliver it)."""
    sent = labels(alertname, host, severity)
    body = {"labels": sent, "startsAt": at.isoformat(), "endsAt": (at + timedelta(hours=1)).isoformat()}
    await asyncio.to_thread(am.post_alerts, [body])
    fingerprint = label_fingerprint(sent)
    await h.send(
        alert_envelope(
            alertname,
            host,
            severity=severity,
            starts_at=at,
            received_at=at + timedelta(seconds=1),
            fingerprint=fingerprint,
        )
    )
    return fingerprint


async def alert_row(h: Harness, fingerprint: str) -> dict[str, Any]:
    [row] = await h.query("SELECT * FROM alerts WHERE fingerprint = %s", fingerprint)
    return row


async def until(check: Any, what: str, within: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.2)


async def test_silence_in_alertmanager_keeps_the_alert_from_going_stale(
    settings: Settings, tmp_path: Path, manager: Alertmanager
) -> None:
    settings = settings.model_copy(
        update={"alertmanager_api_urls": (manager.url,), "alertmanager_poll_interval_s": 0.3}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    async with correlator(settings, tmp_path, RULES) as h:
        fingerprint = await fire(h, manager, "HostDown", "web-1", "critical", now - timedelta(minutes=1))

        async def stored() -> bool:
            return await h.alert_count() == 1

        await h.settled(stored)
        silence = {
            "matchers": [{"name": "instance", "value": "web-1:9100", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=2)).isoformat(),
            "createdBy": "bob",
            "comment": "replacing a disk",
        }
        created = await asyncio.to_thread(manager.api, "POST", "/api/v2/silences", silence)
        silence_id = created["silenceID"]

        async def silenced() -> bool:
            return (await alert_row(h, fingerprint))["suppressed"] == "silenced"

        await until(silenced, "the alert shows as silenced")
        [incident] = await h.incidents()
        async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row) as conn:
            whole = await readmodel.whole(conn, incident["key"])
        assert whole is not None
        [alert] = whole.alerts
        assert (alert.suppressed, alert.silenced_by) == ("silenced", [silence_id])
        assert alert.suppressed_until == now + timedelta(hours=2)
        [shown] = alert.silences
        assert (shown["id"], shown["created_by"], shown["comment"]) == (silence_id, "bob", "replacing a disk")
        kinds = [t.kind for t in whole.timeline]
        assert "alert_silenced" in kinds
        # The silence acknowledged the incident in bob's name (VIGIL_SILENCE_ACKNOWLEDGES is on by default).
        assert (whole.incident.state, whole.incident.acknowledged_by) == ("acknowledged", "bob")

        # However long past stale_after: neither stale nor resolved while the silence lasts.
        for minutes in (1, 5, 9):
            await h.sweep(datetime.now(UTC) + timedelta(minutes=minutes))
        assert (await alert_row(h, fingerprint))["status"] == "firing"
        [incident] = await h.incidents()
        assert incident["state"] != "resolved" and incident["firing_count"] == 1

        # Expired: ordinary again; the stale rule counts from the poll that saw it active.
        await asyncio.to_thread(manager.api, "DELETE", f"/api/v2/silence/{silence_id}")

        async def ordinary() -> bool:
            return (await alert_row(h, fingerprint))["suppressed"] is None

        await until(ordinary, "the alert is ordinary again")
        assert "alert_unsilenced" in await h.timeline(incident["key"])
        [stored_silence] = await h.query("SELECT state, created_by FROM silences WHERE id = %s", silence_id)
        assert stored_silence["created_by"] == "bob"
        await h.sweep(datetime.now(UTC) + timedelta(minutes=1))
        assert (await alert_row(h, fingerprint))["status"] == "stale"


async def test_inhibited_alert_shows_as_inhibited(settings: Settings, tmp_path: Path, manager: Alertmanager) -> None:
    settings = settings.model_copy(
        update={"alertmanager_api_urls": (manager.url,), "alertmanager_poll_interval_s": 0.3}
    )
    now = datetime.now(UTC).replace(microsecond=0)
    async with correlator(settings, tmp_path, RULES) as h:
        source = label_fingerprint(labels("SiteDown", "web-2"))
        body = {"labels": labels("SiteDown", "web-2"), "startsAt": now.isoformat()}
        await asyncio.to_thread(manager.post_alerts, [body])
        target = await fire(h, manager, "SlowPages", "web-2", "warning", now - timedelta(minutes=1))

        async def inhibited() -> bool:
            rows = await h.query("SELECT suppressed, inhibited_by FROM alerts WHERE fingerprint = %s", target)
            return bool(rows) and rows[0]["suppressed"] == "inhibited"

        await until(inhibited, "the alert shows as inhibited")
        row = await alert_row(h, target)
        assert row["inhibited_by"] == [source] and row["suppressed_until"] is None
        await h.sweep(datetime.now(UTC) + timedelta(minutes=2))
        assert (await alert_row(h, target))["status"] == "firing"
