"""Publishing the outbox: events are rows written with the change they announce; they go to RabbitMQ
after the commit, and a row is marked published only once the broker confirmed it.

A row is claimed with `FOR UPDATE SKIP LOCKED`, so two replicas never publish the same row at the same
time. Delivery stays at-least-once (a crash between confirm and mark republishes): subscribers dedupe by
envelope id and keep the highest `revision`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
from prometheus_client import Counter, Gauge
from psycopg_pool import AsyncConnectionPool

from services.correlator.store import Q
from shared.messaging import Broker, BrokerUnavailable

log = logging.getLogger(__name__)

INCIDENT_EVENTS = Counter("vigil_incidents_total", "Incident events published, by event", ["event"])
OUTBOX_PENDING = Gauge("vigil_correlator_outbox_pending", "Outbox rows left for the background publisher")


def to_message(row: dict[str, Any]) -> aio_pika.Message:
    body = row["body"]
    return aio_pika.Message(
        orjson.dumps(body),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(row["message_id"]),
        type=body.get("type"),
        app_id=body.get("producer"),
    )


async def publish_rows(pool: AsyncConnectionPool, broker: Broker, ids: Sequence[int] | None = None) -> int:
    """Publish the given outbox rows (or the leftovers, if None); returns how many were confirmed."""
    async with pool.connection() as conn, conn.transaction():
        if ids is not None:
            cur = await conn.execute(Q.claim_outbox_ids, {"ids": list(ids)})
        else:
            cur = await conn.execute(Q.claim_outbox_leftovers, {"older_than_s": 5.0, "limit": 500})
        rows = await cur.fetchall()
        if not rows:
            return 0
        results = await asyncio.gather(
            *(
                # Not mandatory: nobody may be bound to, say, incident.updated.info, and that is fine.
                broker.publish_message(r["exchange"], r["routing_key"], to_message(r), mandatory=False)
                for r in rows
            ),
            return_exceptions=True,
        )
        confirmed = [r for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
        if confirmed:
            await conn.execute(Q.mark_published, {"ids": [r["id"] for r in confirmed]})
        failed = [res for res in results if isinstance(res, BaseException)]
    for r in confirmed:
        INCIDENT_EVENTS.labels(r["body"].get("type", "?")).inc()
    if failed:
        log.warning(
            "incident events not confirmed, left in the outbox",
            extra={"count": len(failed), "error": str(failed[0])},
        )
        if not all(isinstance(f, BrokerUnavailable) for f in failed):
            raise failed[0]
    return len(confirmed)


async def drain_forever(pool: AsyncConnectionPool, broker: Broker, interval_s: float = 2.0) -> None:
    """Publish what batches left behind (a crash after commit, a broker outage), in the background."""
    while True:
        try:
            await broker.wait_connected()
            while await publish_rows(pool, broker) > 0:
                pass
            async with pool.connection() as conn:
                cur = await conn.execute(Q.outbox_pending)
                row = await cur.fetchone()
                OUTBOX_PENDING.set(row["n"] if row else 0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox drain failed; will retry")
        await asyncio.sleep(interval_s)


class AfterCommit:
    """Publishes the outbox rows of committed batches off the consumer's path: the next batch does not wait
    for broker confirms. Rows not confirmed stay in the outbox for `drain_forever`."""

    def __init__(self, pool: AsyncConnectionPool, broker: Broker) -> None:
        self.pool, self.broker = pool, broker
        self.pending: asyncio.Queue[list[int]] = asyncio.Queue()

    def submit(self, ids: list[int]) -> None:
        if ids:
            self.pending.put_nowait(ids)

    async def run_forever(self) -> None:
        while True:
            ids = await self.pending.get()
            while not self.pending.empty():
                ids.extend(self.pending.get_nowait())
            try:
                await publish_rows(self.pool, self.broker, ids)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing after commit failed; left to the outbox drainer")
