"""`Broker`, what a service holds: the connection and publishing (`connection.py`), consumer lanes (`lanes.py`), and
retries, parking and deferral (`retry.py`), configured together from the service's settings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared.contracts import Envelope
from shared.messaging.connection import BrokerConnection
from shared.messaging.lanes import BatchHandler, Delivery, Lane, OutageTest, Splitter
from shared.messaging.retry import Rescheduler
from shared.messaging.topology import QueueSpec


@dataclass
class Broker:
    """One robust connection: a confirmed publishing channel and one channel per consumer lane."""

    url: str
    producer: str
    retry_delays_ms: Sequence[int] = (1_000, 10_000, 60_000)
    # How long `defer` holds a message back: consumers use it to coalesce bursts (see `Rescheduler.defer`).
    defer_ms: int = 10_000
    max_attempts: int = 5
    prefetch: int = 200
    publish_timeout_s: float = 5.0
    stall_after_s: float = 120.0
    _link: BrokerConnection = field(init=False)
    _retries: Rescheduler = field(init=False)
    _lanes: list[Lane] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._link = BrokerConnection(
            self.url,
            self.producer,
            delays_ms=(*self.retry_delays_ms, self.defer_ms),
            publish_timeout_s=self.publish_timeout_s,
        )
        self._retries = Rescheduler(self._link.publish_message, self.retry_delays_ms, self.defer_ms, self.max_attempts)

    async def start(self) -> None:
        """Connect in the background, retrying until the broker answers; `ready` says when."""
        await self._link.start()

    async def wait_connected(self) -> None:
        await self._link.wait_connected()

    @property
    def ready(self) -> bool:
        return self._link.ready

    @property
    def connection(self) -> AbstractRobustConnection:
        return self._link.connection

    async def open_channel(self, *, publisher_confirms: bool, on_return_raises: bool = False) -> AbstractChannel:
        """A channel of the caller's own, reopened by aio-pika after a reconnect (see `BrokerConnection`)."""
        return await self._link.open_channel(publisher_confirms=publisher_confirms, on_return_raises=on_return_raises)

    async def publish(
        self, exchange: str, routing_key: str, envelope: Envelope[Any], *, mandatory: bool = True
    ) -> None:
        """Publish and wait for the broker's confirm; `mandatory` makes an unroutable message an error."""
        await self._link.publish(exchange, routing_key, envelope, mandatory=mandatory)

    async def publish_message(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool = True
    ) -> None:
        await self._link.publish_message(exchange, routing_key, message, mandatory=mandatory)

    async def publish_many(self, items: Sequence[tuple[str, str, Envelope[Any]]], *, mandatory: bool = True) -> None:
        """Publish concurrently (the broker confirms in batches); raises if any one is not confirmed."""
        await self._link.publish_many(items, mandatory=mandatory)

    async def consume(
        self,
        spec: QueueSpec,
        handler: BatchHandler,
        *,
        is_outage: OutageTest,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
        concurrency: int = 1,
        batch_bytes: int | None = None,
        split: Splitter | None = None,
    ) -> None:
        """Start consuming `spec`'s queue; returns once the consumers are registered with the broker.

        `concurrency` lanes, each its own channel with one batch in flight and its share of the prefetch window:
        a lane settles its deliveries in order, so a whole batch is acknowledged with one `multiple` ack.
        `is_outage` tells which of the handler's errors mean a server it depends on is down (see `lanes.py`):
        required, as only the service knows what it depends on. `batch_bytes`: a batch also ends once its bodies
        reach this many bytes (messages of many items). `split`: how a message of several items that failed comes
        apart, so that the item at fault fails alone.
        """
        await self.wait_connected()
        share = max(1, -(-self.prefetch // concurrency))
        for number in range(concurrency):
            lane = Lane(
                self._link,
                self._retries,
                spec,
                handler,
                is_outage=is_outage,
                batch_size=batch_size,
                batch_wait_s=batch_wait_s,
                batch_bytes=batch_bytes,
                split=split,
                prefetch=share,
                lane=number,
                stall_after_s=self.stall_after_s,
            )
            await lane.start()
            self._lanes.append(lane)

    def stalled_lanes(self, now: float | None = None) -> list[str]:
        """`<queue>/<lane>` of every lane that has held messages for `stall_after_s` without settling any."""
        now = time.monotonic() if now is None else now
        return [f"{lane.spec.name}/{lane.lane}" for lane in self._lanes if lane.stalled(now)]

    async def retry_or_park(self, delivery: Delivery, queue: str, error: BaseException) -> str:
        """Send a failed message on to its next delay queue, or park it; returns the outcome."""
        return await self._retries.retry_or_park(delivery.message, delivery.attempts, queue, error)

    async def defer(self, delivery: Delivery, queue: str, *, subject: str | None = None) -> bool:
        """Hand the message back to `queue` after `defer_ms`, not counted as a failed attempt; False when it was
        dropped because a copy deferred earlier for the same `subject` is still to come back (`Rescheduler.defer`)."""
        return await self._retries.defer(delivery.message, queue, subject=subject)

    async def close(self) -> None:
        for lane in self._lanes:
            await lane.stop()
        self._lanes.clear()
        await self._link.close()
