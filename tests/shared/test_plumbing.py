"""The shared plumbing against the real broker and database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import psycopg
import pytest
from aiormq.exceptions import AMQPConnectionError

from shared.contracts import ALERTS_EXCHANGE, INCIDENTS_EXCHANGE, Envelope, IncidentCommand
from shared.db import MigrationError, is_database_outage, list_migrations, migrate
from shared.messaging import (
    CORRELATOR_QUEUE,
    ENRICHER_QUEUE,
    BrokerUnavailable,
    Delivery,
    PendingCopies,
    PermanentError,
)
from shared.messaging import connection as connection_module
from shared.messaging.connection import BrokerConnection, FailoverConnection
from shared.messaging.topology import ENRICH_ROUTING_KEY, WORK_EXCHANGE
from tests.broker import drain, new_broker


def command_envelope(comment: str = "hello") -> Envelope[IncidentCommand]:
    data = IncidentCommand(key="INC-000001", action="comment", actor="tester", comment=comment)
    return Envelope(type="command.comment", producer="test", data=data)


async def test_confirmed_message_arrives_exactly_once(amqp_url: str) -> None:
    broker = await new_broker(amqp_url)
    try:
        envelope = command_envelope()
        await broker.publish("vigil.commands", "command.comment", envelope)
        received = await drain(amqp_url, CORRELATOR_QUEUE.name)
    finally:
        await broker.close()
    assert len(received) == 1
    body = json.loads(received[0].body)
    assert body["id"] == str(envelope.id)
    assert body["data"]["comment"] == "hello"
    assert received[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_a_refused_connection_is_closed_and_a_live_one_retries_every_second(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refused attempt left to the garbage collector warns "RobustConnection.close was never awaited".
    made: list[aio_pika.RobustConnection] = []

    class Recorded(FailoverConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(connection_module, "FailoverConnection", Recorded)
    with pytest.raises(AMQPConnectionError):
        await BrokerConnection("amqp://guest:guest@127.0.0.1:1/", producer="test")._connect()
    broker = await new_broker(amqp_url)
    try:
        assert [(c.is_closed, c.reconnect_interval) for c in made] == [(True, 1), (False, 1)]
    finally:
        await broker.close()


async def test_topology_declared_twice_is_the_same_topology(amqp_url: str) -> None:
    first = await new_broker(amqp_url)
    second = await new_broker(amqp_url)  # would fail with PRECONDITION_FAILED on any argument mismatch
    assert first.ready and second.ready
    await first.close()
    await second.close()


async def test_an_older_vigils_enricher_bindings_are_removed_at_start(amqp_url: str) -> None:
    """The enricher's queue took every incident event before it took requests: a start unbinds those, so an
    upgraded broker stops filling it with events nobody asked it for."""
    await (await new_broker(amqp_url)).close()  # the queue as a start declares it
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(ENRICHER_QUEUE.name, passive=True)
        await queue.bind(INCIDENTS_EXCHANGE, "incident.updated.#")  # as an older Vigil bound it
    await drain(amqp_url, ENRICHER_QUEUE.name, wait=0.2)
    broker = await new_broker(amqp_url)
    try:
        await broker.publish(INCIDENTS_EXCHANGE, "incident.updated.critical", command_envelope(), mandatory=False)
        await broker.publish(WORK_EXCHANGE, ENRICH_ROUTING_KEY, command_envelope("asked"))
        received = await drain(amqp_url, ENRICHER_QUEUE.name)
    finally:
        await broker.close()
    assert [json.loads(m.body)["data"]["comment"] for m in received] == ["asked"]


async def test_unroutable_mandatory_message_is_an_error(amqp_url: str) -> None:
    broker = await new_broker(amqp_url)
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.publish(ALERTS_EXCHANGE, "nothing.binds.this", command_envelope())
    finally:
        await broker.close()


async def test_failing_consumer_retries_with_delay_then_parks(amqp_url: str) -> None:
    broker = await new_broker(amqp_url, max_attempts=3)
    attempts: list[int] = []
    done = asyncio.Event()

    async def always_fails(deliveries: list[Delivery]) -> None:
        attempts.extend(d.attempts for d in deliveries)
        if len(attempts) >= 3:
            done.set()
        raise RuntimeError("database said no")

    try:
        await broker.consume(CORRELATOR_QUEUE, always_fails, is_outage=is_database_outage)
        await broker.publish("vigil.commands", "command.comment", command_envelope("poison"))
        await asyncio.wait_for(done.wait(), 20)
        parked = await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=1.0)
        await asyncio.sleep(0.5)
    finally:
        await broker.close()
    # Three handlings, each seeing the count of earlier failures, then the parking queue; no fourth try.
    assert attempts == [0, 1, 2]
    assert len(parked) == 1
    assert json.loads(parked[0].body)["data"]["comment"] == "poison"
    assert parked[0].headers["x-vigil-attempts"] == 3
    assert "database said no" in str(parked[0].headers["x-vigil-error"])
    assert await drain(amqp_url, CORRELATOR_QUEUE.name, wait=0.3) == []


async def test_consumer_that_recovers_handles_the_message_once(amqp_url: str) -> None:
    broker = await new_broker(amqp_url)
    handled: list[str] = []
    done = asyncio.Event()
    failures = 0

    async def flaky(deliveries: list[Delivery]) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("transient")
        handled.extend(d.envelope.data["comment"] for d in deliveries)
        done.set()

    try:
        await broker.consume(CORRELATOR_QUEUE, flaky, is_outage=is_database_outage)
        await broker.publish("vigil.commands", "command.comment", command_envelope("eventually"))
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(0.5)
    finally:
        await broker.close()
    assert handled == ["eventually"]
    assert await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=0.2) == []


async def test_deferring_about_a_subject_with_a_copy_on_its_way_drops_the_message(amqp_url: str) -> None:
    # Long enough that a slow machine still handles a1..b1 well within it.
    broker = await new_broker(amqp_url, defer_ms=2000)
    handled: list[str] = []
    deferred: dict[str, bool] = {}

    async def defer_first_sight(deliveries: list[Delivery]) -> None:
        for d in deliveries:
            comment = d.envelope.data["comment"]
            handled.append(comment)
            if comment not in deferred:  # the subject is the comment's letter: a1, a2, a3 are about "a"
                deferred[comment] = await broker.defer(d, CORRELATOR_QUEUE.name, subject=comment[0])

    async def settled(count: int) -> None:
        while len(handled) < count:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # nothing more comes back

    try:
        await broker.consume(CORRELATOR_QUEUE, defer_first_sight, is_outage=is_database_outage)
        for comment in ("a1", "a2", "a3", "b1"):
            await broker.publish("vigil.commands", "command.comment", command_envelope(comment))
        await asyncio.wait_for(settled(6), 20)
        # The copy of a1 came back, so the next message about "a" is deferred again.
        await broker.publish("vigil.commands", "command.comment", command_envelope("a4"))
        await asyncio.wait_for(settled(8), 20)
    finally:
        await broker.close()
    assert deferred == {"a1": True, "a2": False, "a3": False, "b1": True, "a4": True}
    assert sorted(handled) == ["a1", "a1", "a2", "a3", "a4", "a4", "b1", "b1"]


def test_a_pending_copy_covers_its_subject_until_it_is_back_and_is_then_forgotten() -> None:
    pending = PendingCopies()
    pending.add("q", "INC-1", back_at=10.0, now=0.0)
    assert pending.covers("q", "INC-1", 9.9)
    assert not pending.covers("q", "INC-1", 10.0)
    assert not pending.covers("q", "INC-2", 5.0) and not pending.covers("other", "INC-1", 5.0)
    for n in range(2000):
        pending.add("q", f"INC-{n}", back_at=20.0 + n, now=20.0 + n)
    assert len(pending.back_at) <= 1024  # copies already back are forgotten
    for n in range(3000):  # a storm of 3,000 copies all on their way at once: none forgotten
        pending.add("storm", f"INC-{n}", back_at=10_000.0, now=3000.0)
    assert all(pending.covers("storm", f"INC-{n}", 9_999.0) for n in range(3000))
    assert pending.prune_at >= len(pending.back_at)  # not pruning on every add
    pending.add("q", "INC-1", back_at=50.0, now=40.0)
    pending.forget("q", "INC-1", back_at=49.0)  # not the copy on its way: kept
    assert pending.covers("q", "INC-1", 45.0)
    pending.forget("q", "INC-1", back_at=50.0)  # its publish failed: nothing on its way
    assert not pending.covers("q", "INC-1", 45.0)


async def test_batch_failure_isolates_the_poison_message(amqp_url: str) -> None:
    broker = await new_broker(amqp_url, max_attempts=1)
    good: list[str] = []

    async def rejects_poison(deliveries: list[Delivery]) -> None:
        comments = [d.envelope.data["comment"] for d in deliveries]
        if "poison" in comments:
            raise PermanentError("cannot apply")
        good.extend(comments)

    try:
        for text in ("a", "poison", "b"):
            await broker.publish("vigil.commands", "command.comment", command_envelope(text))
        await broker.consume(
            CORRELATOR_QUEUE, rejects_poison, is_outage=is_database_outage, batch_size=10, batch_wait_s=0.3
        )
        parked = await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=1.0)
    finally:
        await broker.close()
    assert sorted(good) == ["a", "b"]
    assert [json.loads(m.body)["data"]["comment"] for m in parked] == ["poison"]


async def test_a_batch_ends_once_its_bodies_reach_the_byte_budget(amqp_url: str) -> None:
    """A notification is one message of many alerts: with `batch_bytes`, a batch ends at the message that brings it to
    that many bytes, however many fewer than `batch_size` it holds; every message still arrives once, in order."""
    broker = await new_broker(amqp_url)
    batches: list[list[Delivery]] = []
    done = asyncio.Event()

    async def record(deliveries: list[Delivery]) -> None:
        batches.append(deliveries)
        if sum(len(b) for b in batches) == 7:
            done.set()

    budget = 3_000
    try:
        for n in range(7):
            await broker.publish("vigil.commands", "command.comment", command_envelope(f"{n}" + "x" * 1_000))
        await broker.consume(
            CORRELATOR_QUEUE,
            record,
            is_outage=is_database_outage,
            batch_size=10,
            batch_wait_s=0.5,
            batch_bytes=budget,
        )
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await broker.close()
    assert [d.envelope.data["comment"][0] for b in batches for d in b] == [str(n) for n in range(7)]
    sizes = [[len(d.message.body) for d in b] for b in batches]
    assert len(sizes) == 3, sizes  # of about 1,250 bytes each: 3, 3 and the last 1 (10 without the budget)
    for batch in sizes[:-1]:
        assert sum(batch[:-1]) < budget <= sum(batch)


async def test_undecodable_message_is_parked_not_lost(amqp_url: str) -> None:
    broker = await new_broker(amqp_url)
    seen: list[Delivery] = []

    async def handler(deliveries: list[Delivery]) -> None:
        seen.extend(deliveries)

    try:
        await broker.consume(CORRELATOR_QUEUE, handler, is_outage=is_database_outage)
        await broker.publish_message("vigil.commands", "command.x", aio_pika.Message(b"{not json"))
        parked = await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=1.0)
    finally:
        await broker.close()
    assert seen == []
    assert [m.body for m in parked] == [b"{not json"]


async def test_migrations_applied_twice_or_concurrently_leave_one_schema(postgres, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = postgres.admin_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE migrate_race")
    target = postgres.admin_url("migrate_race")
    try:
        results = await asyncio.gather(*(migrate(target) for _ in range(4)))
        again = await migrate(target)
        with psycopg.connect(target) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP DATABASE migrate_race WITH (FORCE)")
    expected = [m.version for m in list_migrations()]
    # Exactly one of the racing starters applied everything; the others and the rerun found nothing to do.
    assert sorted(results, key=len) == [[], [], [], expected]
    assert again == []
    assert versions == expected
    assert {"incidents", "alerts", "incident_timeline", "outbox"} <= tables


async def test_edited_migration_is_refused(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE t_one (id int);")
    assert await migrate(db_url, tmp_path) == ["0001_one"]
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE t_one (id bigint);")
    with pytest.raises(MigrationError, match="0001_one"):
        await migrate(db_url, tmp_path)


async def test_database_outage_holds_the_batch_without_counting_attempts(amqp_url: str) -> None:
    broker = await new_broker(amqp_url, max_attempts=2)
    calls: list[int] = []
    done = asyncio.Event()

    async def database_down_then_up(deliveries: list[Delivery]) -> None:
        calls.append(deliveries[0].attempts)
        if len(calls) < 4:
            raise psycopg.OperationalError("connection refused")
        done.set()

    try:
        await broker.consume(CORRELATOR_QUEUE, database_down_then_up, is_outage=is_database_outage)
        await broker.publish("vigil.commands", "command.comment", command_envelope("held"))
        await asyncio.wait_for(done.wait(), 20)
        parked = await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=0.3)
    finally:
        await broker.close()
    # Four tries of the same delivery, none counted as a failed attempt, nothing parked despite max_attempts=2.
    assert calls == [0, 0, 0, 0]
    assert parked == []


async def test_an_outage_is_what_the_service_says_or_the_broker_being_unavailable(amqp_url: str) -> None:
    """The lanes know no database: an error holds the batch when the service's classifier says it is an outage, or
    when it is the broker's own BrokerUnavailable; anything else, a PostgreSQL error included, counts an attempt."""

    class UpstreamDown(Exception):
        pass

    broker = await new_broker(amqp_url, max_attempts=3)
    failures: list[Exception] = [UpstreamDown(), BrokerUnavailable("gone"), psycopg.OperationalError("refused")]
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(deliveries: list[Delivery]) -> None:
        attempts.append(deliveries[0].attempts)
        if failures:
            raise failures.pop(0)
        done.set()

    try:
        await broker.consume(CORRELATOR_QUEUE, handler, is_outage=lambda exc: isinstance(exc, UpstreamDown))
        await broker.publish("vigil.commands", "command.comment", command_envelope("held, then retried"))
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await broker.close()
    assert attempts == [0, 0, 0, 1]


def test_routing_keys_stay_within_amqp_limits_whatever_the_labels() -> None:
    from shared.contracts import alert_routing_key, incident_routing_key

    hostile = "ü" * 300 + ".#*" + "x" * 300
    key = alert_routing_key(hostile, hostile, hostile)
    assert len(key.encode()) <= 255
    assert key.count(".") == 3 and "#" not in key and "*" not in key
    assert len(incident_routing_key("incident.opened", hostile).encode()) <= 255
