"""Each incident's events reach subscribers in revision order from one correlator, even when the broker refuses
one of them for a while: the correlator against the real PostgreSQL and RabbitMQ, its events read from queues
bound to vigil.incidents.

The refusal is RabbitMQ's own: a subscriber queue that is full and set to `reject-publish` makes the broker
nack every event routed to it (the other queues still get their copy), until its consumer makes room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from shared.config import Settings
from shared.contracts import INCIDENTS_EXCHANGE
from tests.correlator.harness import T0, Harness, alert_envelope, correlator, count_is

ROOM = 2


@asynccontextmanager
async def full_queue(amqp_url: str, pattern: str) -> AsyncIterator[tuple[AbstractChannel, AbstractQueue]]:
    """A subscriber's queue that has fallen behind: full, and refusing what is routed to it."""
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(
            "slow.subscriber", arguments={"x-max-length": ROOM, "x-overflow": "reject-publish"}
        )
        await queue.bind(INCIDENTS_EXCHANGE, pattern)
        for n in range(ROOM):
            await channel.default_exchange.publish(aio_pika.Message(f"backlog {n}".encode()), queue.name)
        yield channel, queue


async def make_room(queue: AbstractQueue) -> None:
    for _ in range(ROOM):
        message = await queue.get(timeout=5)
        await message.ack()


async def next_events(queue: AbstractQueue, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    """The next `n` incident events on `queue`, as they arrive."""
    got: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            assert asyncio.get_running_loop().time() < deadline, f"only {got} arrived"
            await asyncio.sleep(0.05)
            continue
        got.append(json.loads(message.body))
    return got


async def until_published(h: Harness, incident_type: str, host: str) -> None:
    """Wait until the correlator has tried to publish the event: the test's unbounded queue got a copy."""
    for _ in range(400):
        events = await h.events(wait=0.05)
        if any(e["type"] == incident_type and host in e["data"]["incident"]["hosts"] for e in events):
            return
    raise AssertionError(f"no {incident_type} of {host} was published")


def revisions(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(e["data"]["incident"]["key"], e["type"], e["data"]["incident"]["revision"]) for e in events]


async def test_an_event_the_broker_refused_goes_out_again_before_the_later_events_of_its_incident(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h, full_queue(settings.amqp_url, "incident.#") as (_, slow):
        await h.send(alert_envelope())
        await until_published(h, "incident.opened", "web-1")  # refused: the slow queue is full
        await make_room(slow)
        await h.send(alert_envelope("DiskFull", starts_at=T0 + timedelta(minutes=1)))
        await h.settled(await count_is(h, 2))
        got = await next_events(slow, 2)
        [incident] = await h.incidents()
    [(_, first, before), (_, second, after)] = revisions(got)
    assert (first, second) == ("incident.opened", "incident.updated") and before < after == incident["revision"]
    assert got[1]["data"]["change"] == "alerts_added"


async def test_a_refused_event_holds_back_the_rest_of_its_incident_and_nothing_else(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h, full_queue(settings.amqp_url, "incident.*.critical") as (_, slow):
        await h.send(alert_envelope())
        await until_published(h, "incident.opened", "web-1")  # refused: the slow queue is full
        await h.send(alert_envelope("DiskFull", starts_at=T0 + timedelta(minutes=1)))
        await h.settled(await count_is(h, 2))
        # Another incident, routed elsewhere: published although it came after web-1's second change.
        await h.send(alert_envelope("HostDown", host="web-2", severity="error"))
        await h.settled(await count_is(h, 3))
        meanwhile: list[dict[str, Any]] = []
        for _ in range(400):
            meanwhile += await h.events(wait=0.05)
            if any(e["data"]["incident"]["hosts"] == ["web-2"] for e in meanwhile):
                break
        await make_room(slow)
        got = await next_events(slow, 2)
        web1 = next(i for i in await h.incidents() if i["hosts"] == ["web-1"])
    assert [t for k, t, _ in revisions(meanwhile) if k == "INC-000002"] == ["incident.opened"]
    # web-1's update waited for its opening, refused over and over meanwhile: no queue got it before.
    assert {t for k, t, _ in revisions(meanwhile) if k == "INC-000001"} <= {"incident.opened"}
    [(_, first, before), (_, second, after)] = revisions(got)
    assert (first, second) == ("incident.opened", "incident.updated") and before < after == web1["revision"]
