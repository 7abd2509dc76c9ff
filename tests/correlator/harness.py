"""The correlator under test: rules, alert and command envelopes as ingest and the web publish them, and a running
correlator with a queue bound to vigil.incidents (`correlator(...)` yields a Harness)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from services.correlator.app import RULES, build_app
from services.correlator.batches import sweep
from services.correlator.outbox import publish_rows
from shared.config import Settings
from shared.contracts import (
    ALERTS_EXCHANGE,
    COMMANDS_EXCHANGE,
    INCIDENTS_EXCHANGE,
    AlertReceived,
    AlertSource,
    AlertsReceived,
    Envelope,
    IncidentCommand,
    WebhookAlert,
    alert_routing_key,
    alerts_routing_key,
)
from shared.messaging import Broker
from shared.service import BROKER, DB
from tests.conftest import running

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)

RULES_YAML = """
defaults:
  window: 1h
  reopen_window: 30m
  resolve_grace: 5m
  stale_after: 6h
  flapping: {changes: 6, window: 30m}
rules:
  - name: fail2ban
    matchers: ['{source="fail2ban", severity=~"warning|critical"}']
    group_by: [jail]
    title: "fail2ban bans in {{ group.jail }}"
  - name: warnings
    matchers: ['severity="warning"']
    group_by: [$host]
    min_alerts: 3
    title: "{{ alertname }} and other warnings on {{ host }}"
  - name: default
    group_by: [$host]
    title: "{{ alertname }} on {{ host }}: {{ annotations.summary }}"
"""


def alert_envelope(
    alertname: str = "HostDown",
    host: str = "web-1",
    *,
    status: str = "firing",
    severity: str = "critical",
    starts_at: datetime = T0,
    received_at: datetime | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    fingerprint: str = "",
) -> Envelope[AlertReceived]:
    all_labels = {"alertname": alertname, "severity": severity, "instance": f"{host}:9100", **(labels or {})}
    alert = WebhookAlert(
        status=status,
        labels=all_labels,
        annotations=annotations or {"summary": f"{alertname} fired"},
        startsAt=starts_at,
        endsAt=(received_at or starts_at) if status == "resolved" else None,
        generatorURL="http://prometheus:9090/graph?g0.expr=up%3D%3D0",
        fingerprint=fingerprint,
    )
    data = AlertReceived(
        alert=alert,
        source=AlertSource.alertmanager,
        sender="alertmanager",
        receiver="vigil",
        group_key='{}:{alertname="' + alertname + '"}',
        received_at=received_at or starts_at + timedelta(seconds=30),
    )
    return Envelope(type="alert.received", producer="ingest", data=data)


def notification(*alerts: Envelope[AlertReceived]) -> Envelope[AlertsReceived]:
    """The alerts as ingest publishes one Alertmanager notification: one `alerts.received` message."""
    return Envelope(type="alerts.received", producer="ingest", data=AlertsReceived(alerts=[a.data for a in alerts]))


def command_envelope(key: str, action: str, actor: str = "alice", comment: str = "") -> Envelope[IncidentCommand]:
    cmd = IncidentCommand(key=key, action=action, actor=actor, comment=comment, requested_at=T0 + timedelta(minutes=5))
    return Envelope(type=f"command.{action}", producer="web", data=cmd)


@dataclass
class Harness:
    settings: Settings
    app: Any
    publisher: Broker
    events_queue: str
    url: str
    sent: int = 0
    baseline: float = 0.0

    async def send(self, *envelopes: Envelope[Any]) -> None:
        for env in envelopes:
            self.sent += 1
            if env.type == "alert.received":
                a = env.data.alert
                key = alert_routing_key(a.status, a.labels.get("severity"), a.labels.get("alertname"))
                await self.publisher.publish(ALERTS_EXCHANGE, key, env)
            elif env.type == "alerts.received":
                await self.publisher.publish(ALERTS_EXCHANGE, alerts_routing_key("alertmanager"), env)
            else:
                await self.publisher.publish(COMMANDS_EXCHANGE, env.type, env)

    async def send_in_order(self, *envelopes: Envelope[Any]) -> None:
        """One at a time: two batches in flight may apply messages sent together in either order."""
        for env in envelopes:
            await self.send(env)
            await self.settled(always_true)

    async def sweep(self, now: datetime) -> None:
        ids = await sweep(self.app[DB], self.app[RULES], now)
        if ids:
            await publish_rows(self.app[DB], self.app[BROKER], ids)

    async def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.settings.database_url, row_factory=dict_row) as conn:
            cur = await conn.execute(sql, args)  # type: ignore[arg-type]
            return await cur.fetchall()

    async def incidents(self) -> list[dict[str, Any]]:
        return await self.query("SELECT * FROM incidents ORDER BY id")

    async def timeline(self, key: str) -> list[str]:
        rows = await self.query(
            "SELECT t.kind FROM incident_timeline t JOIN incidents i ON i.id = t.incident_id WHERE i.key = %s"
            " ORDER BY t.id",
            key,
        )
        return [r["kind"] for r in rows]

    async def events(self, wait: float = 0.4) -> list[dict[str, Any]]:
        """Incident events published so far (drained from the test's own queue)."""
        got = []
        async with await aio_pika.connect(self.settings.amqp_url) as conn:
            channel = await conn.channel()
            queue = await channel.get_queue(self.events_queue)
            while True:
                message = await queue.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(wait)
                    message = await queue.get(fail=False, no_ack=True)
                    if message is None:
                        return got
                body = json.loads(message.body)
                body["routing_key"] = message.routing_key
                got.append(body)

    async def settled(self, check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
        """Wait until the queue is drained and `check` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if consumed() - self.baseline >= self.sent and await check():
                await asyncio.sleep(0.1)
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("correlator did not reach the expected state in time")
            await asyncio.sleep(0.05)

    async def alert_count(self) -> int:
        return (await self.query("SELECT count(*) AS n FROM alerts"))[0]["n"]


def consumed() -> float:
    """Messages the correlator consumers of this process finished with (any outcome)."""
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "vigil_messages_consumed"
        for s in metric.samples
        if s.name.endswith("_total") and s.labels.get("queue") == "vigil.correlator"
    )


def rules_file(tmp_path: Path, text: str = RULES_YAML) -> Path:
    path = tmp_path / "correlation.yml"
    path.write_text(text)
    return path


@asynccontextmanager
async def correlator(settings: Settings, tmp_path: Path, rules: str = RULES_YAML) -> AsyncIterator[Harness]:
    settings = settings.model_copy(update={"correlation_rules": rules_file(tmp_path, rules)})
    publisher = Broker(settings.amqp_url, producer="test")
    await publisher.start()
    await asyncio.wait_for(publisher.wait_connected(), 30)
    async with await aio_pika.connect(settings.amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue("test.incidents", durable=True)
        await queue.bind(INCIDENTS_EXCHANGE, "#")
    app = build_app(settings, sweep_interval_s=3600)
    try:
        async with running(app, settings.correlator_port) as url:
            harness = Harness(settings, app, publisher, "test.incidents", url, baseline=consumed())
            await wait_ready(url)
            yield harness
    finally:
        await publisher.close()


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if (await client.get(f"{url}/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("correlator never became ready")


async def count_is(h: Harness, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await h.alert_count() >= n

    return check


async def always_true() -> bool:
    return True
