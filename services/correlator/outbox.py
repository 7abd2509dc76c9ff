"""Publishing the outbox: events are rows written with the change they announce; they go to RabbitMQ
after the commit, and a row is marked published only once the broker confirmed it.

One path publishes, per process: `AfterCommit` runs a pass whenever a batch committed and every couple of
seconds, and a pass publishes the unpublished rows in id order, which for one incident is the order of its
changes (its batches hold the group lock until they commit, so a later change gets higher ids). A row is sent
only once every earlier row of its incident is confirmed: a row the broker did not confirm holds back the rest
of its incident, not other incidents, until a later pass starts again from the oldest unpublished row. So,
from one correlator, the events of an incident reach every queue in revision order.

Each wave of a chunk (see `waves`) leaves in one socket write, as AMQP frames encoded by Vigil itself
(shared/messaging/frame_publisher.py) with every property aio-pika gave these events before (`to_message`,
`open_outbox_publisher`), and the broker's confirms say row by row which went out; where frames cannot be
written, aio-pika publishes them.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so two replicas never publish the same row at the same time,
and so one replica may publish an incident's later row while another still holds an earlier one: across
replicas (a takeover of a crashed replica's leftovers, too) order is not guaranteed. Delivery is at-least-once
(a crash or a lost confirm between publish and mark republishes). That is why every event carries the whole
incident snapshot and its `revision`: subscribers dedupe by envelope id and tell a late snapshot by its
revision (docs/subscribers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from services.correlator.store import Q
from shared.db import Pool
from shared.messaging import BatchPublisher, Broker, BrokerUnavailable, JsonMessage, open_batch_publisher

log = logging.getLogger(__name__)

INCIDENT_EVENTS = Counter("vigil_incidents_total", "Incident events published, by event", ["event"])
OUTBOX_PENDING = Gauge("vigil_correlator_outbox_pending", "Outbox rows left for the background publisher")
# How often OUTBOX_PENDING is counted. In a storm the count walks the dead entries of the unpublished-rows index until
# autovacuum comes by (40-120 ms with 20,000 rows published in 10 s): every 2 s it was about 8 % of PostgreSQL's CPU in
# the one-alert-per-webhook storm. Prometheus scrapes every 15 s or less often.
COUNT_INTERVAL_S = 15.0

# Rows per claim: each chunk is one transaction, each of its waves one write on the outbox's confirmed channel.
CHUNK = 500
# A row this process did not commit is another's to publish until it is this old (then it is a leftover:
# its process crashed, or could not reach the broker).
LEFTOVER_AFTER_S = 5.0

Row = dict[str, Any]


@dataclass(frozen=True)
class Pass:
    confirmed: int = 0
    unconfirmed: int = 0


def to_message(row: Row) -> JsonMessage:
    body = row["body"]
    return JsonMessage(
        row["exchange"],
        row["routing_key"],
        str(row["message_id"]),
        orjson.dumps(body),
        type=body.get("type"),
        app_id=body.get("producer"),
        # Not mandatory: nobody may be bound to, say, incident.updated.info, and that is fine.
        mandatory=False,
    )


def open_outbox_publisher(broker: Broker) -> BatchPublisher:
    """Frames on a channel of the outbox's own, or aio-pika's publish where frames cannot be written.

    With aio-pika's defaults (an empty headers table, priority 0): aio-pika published these events before, and a
    subscriber must see no property change."""
    return open_batch_publisher(broker, broker.publish_timeout_s, name="outbox", aio_pika_defaults=True)


def waves(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows in id order, split so that the n-th row of each incident is in the n-th wave: a wave goes out at
    once, the next only after its confirms, so no row leaves before the earlier rows of its incident are
    confirmed. Usually one wave: a chunk rarely holds two changes of one incident."""
    out: list[list[Row]] = []
    depth: dict[str, int] = {}
    for row in rows:
        # A row that is not an incident event orders with nothing.
        incident = row.get("incident") or f"#{row['id']}"
        n = depth.get(incident, 0)
        depth[incident] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(row)
    return out


async def publish_rows(pool: Pool, broker: Broker, ids: Sequence[int] = ()) -> int:
    """One pass over the outbox: every unpublished row up to the newest of `ids` (rows this process committed)
    and every leftover, in id order; returns how many the broker confirmed. On a publisher of its own, opened
    for the pass (`AfterCommit` keeps one)."""
    publisher = open_outbox_publisher(broker)
    try:
        return (await publish_pass(pool, publisher, max(ids, default=0))).confirmed
    finally:
        await publisher.close()


async def publish_pass(
    pool: Pool,
    publisher: BatchPublisher,
    upto: int,
    *,
    chunk: int = CHUNK,
    leftover_after_s: float = LEFTOVER_AFTER_S,
) -> Pass:
    after, confirmed, unconfirmed = 0, 0, 0
    held: set[str] = set()  # incidents with an unconfirmed row: their later rows wait for the next pass
    errors: list[BaseException] = []
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                Q.claim_outbox,
                {"after": after, "upto": upto, "older_than_s": leftover_after_s, "limit": chunk},
            )
            rows = await cur.fetchall()
            if not rows:
                break
            sent, failed = await _publish_in_order(publisher, rows, held)
            if sent:
                await conn.execute(Q.mark_published, {"ids": [r["id"] for r in sent]})
        for r in sent:
            INCIDENT_EVENTS.labels(r["body"].get("type", "?")).inc()
        confirmed, unconfirmed = confirmed + len(sent), unconfirmed + len(failed)
        errors.extend(failed)
        # Nothing confirmed and something refused: the broker is away, the rest can wait for the next pass.
        if len(rows) < chunk or (failed and not sent):
            break
        after = rows[-1]["id"]
    if errors:
        log.warning(
            "incident events not confirmed, left in the outbox",
            extra={"count": len(errors), "incidents_held": len(held), "error": str(errors[0])},
        )
        unexpected = [e for e in errors if not isinstance(e, BrokerUnavailable)]
        if unexpected:
            raise unexpected[0]
    return Pass(confirmed, unconfirmed)


async def _publish_in_order(
    publisher: BatchPublisher, rows: Sequence[Row], held: set[str]
) -> tuple[list[Row], list[BaseException]]:
    """Publish a chunk wave by wave, skipping the incidents in `held` and adding those a row failed for."""
    sent: list[Row] = []
    failed: list[BaseException] = []
    for wave in waves(rows):
        ready = [r for r in wave if r.get("incident") not in held]
        if not ready:
            continue
        outcomes = await publisher.publish([to_message(r) for r in ready])
        for row, outcome in zip(ready, outcomes, strict=True):
            if outcome is not None:
                failed.append(outcome)
                if row.get("incident") is not None:
                    held.add(row["incident"])
            else:
                sent.append(row)
    return sent, failed


class AfterCommit:
    """The one publishing path of a process: `submit` (a batch committed these rows) wakes it, and it wakes on
    its own every `interval_s` for leftovers. The next batch does not wait for broker confirms."""

    def __init__(self, pool: Pool, broker: Broker, *, interval_s: float = 2.0) -> None:
        self.pool, self.broker, self.interval_s = pool, broker, interval_s
        self.publisher = open_outbox_publisher(broker)
        # The newest row this process committed: every unpublished row up to it is in its view.
        self.upto = 0
        self.wake = asyncio.Event()

    def submit(self, ids: Sequence[int]) -> None:
        if ids:
            self.upto = max(self.upto, *ids)
            self.wake.set()

    async def run_forever(self) -> None:
        try:
            await self._publish_forever()
        finally:
            await self.publisher.close()

    async def _publish_forever(self) -> None:
        loop = asyncio.get_running_loop()
        counted_at = float("-inf")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval_s)
            self.wake.clear()
            done = Pass()
            try:
                await self.broker.wait_connected()
                done = await publish_pass(self.pool, self.publisher, self.upto)
                if loop.time() - counted_at >= COUNT_INTERVAL_S:
                    counted_at = loop.time()
                    async with self.pool.connection() as conn:
                        cur = await conn.execute(Q.outbox_pending)
                        row = await cur.fetchone()
                    OUTBOX_PENDING.set(row["n"] if row else 0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing the outbox failed; will retry")
                done = Pass(unconfirmed=1)
            if done.unconfirmed:
                # A broker that refuses is not asked again at every commit; what commits meanwhile waits too,
                # since it may be the continuation of an incident whose earlier event is still unconfirmed.
                await asyncio.sleep(self.interval_s)
