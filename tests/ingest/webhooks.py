"""What a sender posts to ingest (Alertmanager notifications, endpoints) and a tap on `vigil.alerts` to read what
ingest published."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika

from shared.contracts import ALERTS_EXCHANGE, AlertReceived, AlertsReceived, Envelope
from shared.fingerprint import label_fingerprint

WEBHOOK = "/api/v1/webhooks/alertmanager"
EVENTS = "/api/v1/events"
AUTH = {"Authorization": "Bearer test-sender-token-0001"}


def am_alert(name: str = "HostDown", **labels: str) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": "critical", "instance": "db1:9100", **labels}
    return {
        "status": "firing",
        "labels": all_labels,
        "annotations": {"summary": f"{name} on db1", "description": "Ünïcödé <b>not html</b>"},
        "startsAt": "2026-11-25T10:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": label_fingerprint(all_labels),
    }


def notification(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "receiver": "vigil",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HostDown"}',
        "truncatedAlerts": 0,
    }


class AlertTap:
    """A queue of the test's own bound to `vigil.alerts`, as an outside subscriber would have."""

    def __init__(self, url: str, pattern: str = "#") -> None:
        self.url, self.pattern = url, pattern
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.queue: aio_pika.abc.AbstractQueue | None = None

    async def __aenter__(self) -> AlertTap:
        self.connection = await aio_pika.connect_robust(self.url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(ALERTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self.queue = await channel.declare_queue("test.tap", durable=True, arguments={"x-queue-type": "quorum"})
        await self.queue.bind(exchange, self.pattern)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def take(
        self, count: int, *, within: float = 10, settle: float = 0.3
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Exactly the messages there are: waits for `count`, then `settle` seconds more for any extra."""
        assert self.queue is not None
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(got) < count and loop.time() < deadline:
            message = await self.queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                got.append(message)
        await asyncio.sleep(settle)
        while (message := await self.queue.get(fail=False, no_ack=True)) is not None:
            got.append(message)
        return got


def envelopes(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[Envelope[AlertReceived]]:
    return [Envelope[AlertReceived].model_validate_json(m.body) for m in messages]


def notifications(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[Envelope[AlertsReceived]]:
    return [Envelope[AlertsReceived].model_validate_json(m.body) for m in messages]


def received(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[AlertReceived]:
    """Every alert the messages carry: notifications' alerts, and generic events' one each."""
    out: list[AlertReceived] = []
    for m in messages:
        if m.type == "alerts.received":
            out.extend(Envelope[AlertsReceived].model_validate_json(m.body).data.alerts)
        else:
            out.append(Envelope[AlertReceived].model_validate_json(m.body).data)
    return out
