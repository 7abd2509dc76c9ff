"""The outbox published as AMQP frames (services/correlator/outbox.py, shared/messaging/frame_publisher.py), against
the real PostgreSQL and RabbitMQ: subscribers get every event as aio-pika published it, each incident's in revision
order, and a broker stopped in the middle of a pass leaves what it did not confirm in the outbox until it is back.

The rows are written as the correlator writes them (`insert_outbox`), several changes of one incident in one chunk
among others', so that a chunk goes out in several waves."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import pytest
from pamqp import commands as spec

from devstack.throwaway import new_rabbitmq, temp_root
from services.correlator.outbox import Pass, open_outbox_publisher, publish_pass
from services.correlator.store import PRODUCER, Q
from shared.contracts import INCIDENTS_EXCHANGE, IncidentEventType, incident_routing_key
from shared.db import Pool, open_pool
from shared.messaging import BatchPublisher, JsonMessage, frame_publisher, open_batch_publisher
from shared.messaging.frame_publisher import Outcome
from tests.broker import new_broker
from tests.correlator.test_correlator_subscriber import event

TAP = "test.incidents"
FELL_BACK = "publishing through aio-pika"


def outbox_row(key: str, revision: int) -> dict[str, Any]:
    """An outbox row as `store._outbox_rows` makes it."""
    kind = IncidentEventType.opened if revision == 1 else IncidentEventType.updated
    envelope = event(kind, key, revision)
    return {
        "message_id": str(envelope.id),
        "exchange": INCIDENTS_EXCHANGE,
        "routing_key": incident_routing_key(kind, envelope.data.incident.severity),
        "body": envelope.model_dump(mode="json"),
    }


def interleaved(incidents: int, revisions: int, *, ahead: int = 1) -> list[dict[str, Any]]:
    """Each incident's changes in revision order, the incidents' taking turns; the first incident's first `ahead`
    changes come before any other's, so that a chunk may hold several changes of one incident."""
    keys = [f"INC-{n:06d}" for n in range(1, incidents + 1)]
    first = [(keys[0], r) for r in range(1, ahead + 1)]
    turns = [(key, r) for r in range(1, revisions + 1) for key in keys if (key, r) not in first]
    return [outbox_row(key, revision) for key, revision in first + turns]


async def seed(pool: Pool, rows: Sequence[dict[str, Any]]) -> int:
    """The rows in the outbox, in order; returns the newest id."""
    async with pool.connection() as conn:
        cur = await conn.execute(Q.insert_outbox, {"rows": json.dumps(list(rows))})
        return max(r["id"] for r in await cur.fetchall())


async def unpublished(pool: Pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def bind_tap(url: str) -> None:
    """A subscriber's durable queue for every incident event."""
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(TAP, durable=True)
        await queue.bind(INCIDENTS_EXCHANGE, "#")


async def delivered(url: str) -> list[Any]:
    """Every message in the tap, in order, as the wire carried it (aiormq's, with the properties as sent)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        got = []
        while True:
            message = await channel.basic_get(TAP, no_ack=True)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                return got
            got.append(message)
    finally:
        await connection.close()


def on_the_wire(message: Any) -> tuple[str, str, dict[str, Any], bytes]:
    properties = message.header.properties
    every = {name: getattr(properties, name) for name in properties.attributes()}
    return message.delivery.exchange, message.delivery.routing_key, every, message.body


def revisions_by_incident(messages: Sequence[Any]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for message in messages:
        incident = json.loads(message.body)["data"]["incident"]
        found.setdefault(incident["key"], []).append(incident["revision"])
    return found


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Pool]:
    pool = await open_pool(db_url, max_size=2)
    yield pool
    await pool.close()


async def test_events_sent_as_frames_are_those_aio_pika_sent_in_revision_order(
    pool: Pool, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A1 A2 A3 B1 C1 | A4 B2 C2 B3 C3 | B4 C4 in chunks of five: the first goes out in three waves, the second in two.
    rows = interleaved(incidents=3, revisions=4, ahead=3)
    broker = await new_broker(amqp_url)
    try:
        await bind_tap(amqp_url)
        upto = await seed(pool, rows)
        frames = open_outbox_publisher(broker)
        try:
            through_frames = await publish_pass(pool, frames, upto, chunk=5)
        finally:
            await frames.close()
        sent_as_frames = await delivered(amqp_url)
        async with pool.connection() as conn:
            await conn.execute("UPDATE outbox SET published_at = NULL")
        aio_pika_only = open_batch_publisher(broker, broker.publish_timeout_s, name="test", frames=False)
        through_aio_pika = await publish_pass(pool, aio_pika_only, upto, chunk=5)
        sent_by_aio_pika = await delivered(amqp_url)
    finally:
        await broker.close()
    assert through_frames == through_aio_pika == Pass(confirmed=len(rows))
    assert not [r for r in caplog.records if str(r.msg).startswith(FELL_BACK)]
    # The same bodies byte for byte, every property the same (aio-pika's empty headers and priority 0 included).
    assert sorted(map(on_the_wire, sent_as_frames), key=str) == sorted(map(on_the_wire, sent_by_aio_pika), key=str)
    assert sorted(json.loads(m.body)["id"] for m in sent_as_frames) == sorted(r["message_id"] for r in rows)
    exchange, routing_key, properties, body = on_the_wire(sent_as_frames[0])
    envelope = json.loads(body)
    assert envelope == rows[0]["body"]
    assert (exchange, routing_key) == (INCIDENTS_EXCHANGE, "incident.opened.critical")
    assert {name: value for name, value in properties.items() if value is not None and value != ""} == {
        "content_type": "application/json",
        "delivery_mode": 2,
        "headers": {},
        "priority": 0,
        "message_id": envelope["id"],
        "message_type": "incident.opened",
        "app_id": PRODUCER,
    }
    assert revisions_by_incident(sent_as_frames) == {f"INC-00000{n}": [1, 2, 3, 4] for n in (1, 2, 3)}


async def test_the_outbox_falls_back_to_aio_pika_when_frames_cannot_be_written(
    pool: Pool, amqp_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As if aiormq's channel no longer had the bookkeeping the frames rely on (another aiormq release).
    monkeypatch.setattr(frame_publisher, "BOOKKEEPING", (*frame_publisher.BOOKKEEPING, "gone_in_a_later_aiormq"))
    rows = interleaved(incidents=2, revisions=3)
    broker = await new_broker(amqp_url)
    publisher = open_outbox_publisher(broker)
    try:
        await bind_tap(amqp_url)
        done = await publish_pass(pool, publisher, await seed(pool, rows), chunk=4)
        sent = await delivered(amqp_url)
    finally:
        await publisher.close()
        await broker.close()
    assert done == Pass(confirmed=len(rows)) and await unpublished(pool) == 0
    assert revisions_by_incident(sent) == {"INC-000001": [1, 2, 3], "INC-000002": [1, 2, 3]}
    [gave_way] = [r for r in caplog.records if str(r.msg).startswith(FELL_BACK)]
    assert gave_way.__dict__["publisher"] == "outbox"


class ConfirmsLate:
    """The outbox's publisher, its broker taking `delay_s` to confirm; `confirmed_at`: when it did (the database's
    clock, which is the machine's)."""

    def __init__(self, inner: BatchPublisher, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.confirmed_at: list[datetime] = []

    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        outcomes = await self.inner.publish(messages)
        await asyncio.sleep(self.delay_s)
        self.confirmed_at.append(datetime.now(UTC))
        return outcomes

    async def close(self) -> None:
        await self.inner.close()


async def test_an_event_is_recorded_published_when_the_broker_confirmed_it(pool: Pool, amqp_url: str) -> None:
    # What retention and the end-to-end bench read: not when the chunk was claimed.
    broker = await new_broker(amqp_url)
    publisher = ConfirmsLate(open_outbox_publisher(broker), delay_s=0.5)
    try:
        done = await publish_pass(pool, publisher, await seed(pool, interleaved(incidents=2, revisions=1)))
    finally:
        await publisher.close()
        await broker.close()
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT published_at FROM outbox")).fetchall()
    assert done == Pass(confirmed=2)
    [confirmed_at] = publisher.confirmed_at
    assert [r["published_at"] >= confirmed_at for r in rows] == [True, True]


class StopsTheBroker:
    """The outbox's publisher, stopping the broker while its `at`-th batch is on the way."""

    def __init__(self, inner: BatchPublisher, stop: Any, at: int) -> None:
        self.inner, self.stop, self.at, self.calls = inner, stop, at, 0

    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        self.calls += 1
        if self.calls != self.at:
            return await self.inner.publish(messages)
        publishing = asyncio.create_task(self.inner.publish(messages))
        await asyncio.to_thread(self.stop)
        return await publishing

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.slow
async def test_a_broker_stopped_mid_pass_leaves_the_rest_in_the_outbox_until_it_is_back(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Persistent events on a durable queue: what the broker confirmed before it stopped is still there after, what
    it did not is published once it is back, and no incident's events overtake each other on the way."""
    root = temp_root("vigil-outbox-restart-")
    server = new_rabbitmq(root)
    await asyncio.to_thread(server.start)
    try:
        url = server.url()
        broker = await new_broker(url, publish_timeout_s=2.0)
        publisher = open_outbox_publisher(broker)
        try:
            await bind_tap(url)
            rows = interleaved(incidents=20, revisions=10)
            upto = await seed(pool, rows)
            # Chunks of 40 rows, two waves of 20 incidents each: the broker stops while the second chunk's first
            # wave is on its way.
            first = await publish_pass(pool, StopsTheBroker(publisher, server.stop_server, at=3), upto, chunk=40)
            left = await unpublished(pool)
            assert first.confirmed >= 40 and first.unconfirmed > 0
            assert left == len(rows) - first.confirmed > 0
            assert (await publish_pass(pool, publisher, upto, chunk=40)).confirmed == 0  # still down
            assert await unpublished(pool) == left
            await asyncio.to_thread(server.start)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while await unpublished(pool):
                assert loop.time() < deadline, f"{await unpublished(pool)} rows still unpublished"
                done = await publish_pass(pool, publisher, upto, chunk=40) if broker.ready else Pass()
                if not done.confirmed:
                    await asyncio.sleep(0.2)
            sent = await delivered(url)
        finally:
            await publisher.close()
            await broker.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)
    # At least once: an event whose confirm the stop swallowed may arrive twice, never out of order.
    assert {json.loads(m.body)["id"] for m in sent} == {r["message_id"] for r in rows}
    for key, seen in revisions_by_incident(sent).items():
        assert seen == sorted(seen) and sorted(set(seen)) == list(range(1, 11)), key
    assert not [r for r in caplog.records if str(r.msg).startswith(FELL_BACK)]
