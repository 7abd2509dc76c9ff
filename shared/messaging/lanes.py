"""Consumer lanes: deliveries pulled into batches and handled one batch at a time, settled in the order they came.

A lane tells an outage from a bad message by the error: the broker's own `BrokerUnavailable`, or whatever the
service's `is_outage` says is one (`shared.db.is_database_outage` for a service on PostgreSQL). An outage holds the
batch and tries again without counting an attempt; anything else is the failure of the messages that caused it,
found by splitting the batch, while the rest commits; the failed message is retried or parked (`retry.py`), or, when
it carries several items (a notification's alerts) and the service says how it comes apart, sent round as one message
per item, so that the item at fault fails alone. A lane that holds messages without settling any for `stall_after_s`
is stalled: `/readyz` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from shared.contracts import RawEnvelope
from shared.messaging.connection import CHANNEL_ERRORS, BrokerConnection, BrokerUnavailable, decode
from shared.messaging.retry import PermanentError, Rescheduler, attempts_of
from shared.messaging.topology import QueueSpec

log = logging.getLogger(__name__)

CONSUMED = Counter("vigil_messages_consumed_total", "Messages handled, by queue and outcome", ["queue", "outcome"])
HANDLE_SECONDS = Histogram("vigil_message_handle_seconds", "Time to handle a batch of messages", ["queue"])
OLDEST_UNACKED = Gauge(
    "vigil_consumer_oldest_unacked_seconds",
    "How long the oldest message a consumer lane holds has waited to be settled; 0: it holds none",
    ["queue", "lane"],
)
STALLED = Gauge(
    "vigil_consumer_stalled",
    "1 while a consumer lane has held messages for VIGIL_STALL_AFTER_S without settling any",
    ["queue", "lane"],
)
SPLITS = Counter(
    "vigil_consumer_batch_splits_total", "Failed batches split in two to find the message at fault", ["queue"]
)


@dataclass
class Delivery:
    """One decoded message handed to a handler."""

    envelope: RawEnvelope
    message: AbstractIncomingMessage
    attempts: int


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]
# The parts (message id, body) of a message that carries several items, each to be handled as a message of its own
# when the whole failed; empty: the message is one item.
Splitter = Callable[[RawEnvelope], list[tuple[str, bytes]]]
# True for an error that says a server the handler depends on is down, not that the messages are at fault.
OutageTest = Callable[[BaseException], bool]


class Lane:
    """One lane: a channel whose deliveries are pulled into batches and handled one batch at a time; a failed batch
    is retried message by message to isolate the bad one. Deliveries are settled in the order they arrived."""

    def __init__(
        self,
        connection: BrokerConnection,
        retries: Rescheduler,
        spec: QueueSpec,
        handler: BatchHandler,
        *,
        is_outage: OutageTest,
        batch_size: int,
        batch_wait_s: float,
        prefetch: int,
        lane: int,
        stall_after_s: float,
        batch_bytes: int | None = None,
        split: Splitter | None = None,
    ) -> None:
        self.connection, self.retries, self.spec, self.handler = connection, retries, spec, handler
        self.is_outage = is_outage
        self.batch_size, self.batch_wait_s, self.prefetch, self.lane = batch_size, batch_wait_s, prefetch, lane
        self.batch_bytes, self.split = batch_bytes, split
        self.stall_after_s = stall_after_s
        # Each delivery with the monotonic time it arrived, for the age of the oldest one held.
        self.inbox: asyncio.Queue[tuple[float, AbstractIncomingMessage]] = asyncio.Queue()
        self.workers: list[asyncio.Task[None]] = []
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.tag: str | None = None
        # When the batch in hand's first delivery arrived (None: no batch in hand), and when a delivery was last
        # settled (acknowledged, retried or parked): what tells a stalled lane from a busy one.
        self.in_hand_since: float | None = None
        self.settled_at = time.monotonic()

    def oldest_wait(self, now: float) -> float:
        """Seconds the oldest delivery this lane holds (in hand or waiting in its inbox) has waited; 0: none."""
        if self.in_hand_since is not None:
            return now - self.in_hand_since
        if not self.inbox.empty():
            waiting: deque[tuple[float, AbstractIncomingMessage]] = self.inbox._queue  # type: ignore[attr-defined]
            return now - waiting[0][0]  # asyncio.Queue's deque, oldest first
        return 0.0

    def stalled(self, now: float) -> bool:
        return self.oldest_wait(now) >= self.stall_after_s and now - self.settled_at >= self.stall_after_s

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        await self.inbox.put((time.monotonic(), message))

    async def start(self) -> None:
        self.channel = await self.connection.open_channel(publisher_confirms=False)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        # A passive declare, not get_queue(ensure=False): only declared queues are registered with the robust
        # channel, and only registered queues get their consumers back after the broker restarts.
        self.queue = await self.channel.declare_queue(self.spec.name, passive=True)
        self.tag = await self.queue.consume(self._receive, no_ack=False)
        self.workers = [asyncio.create_task(self._work(), name=f"consume-{self.spec.name}-{self.lane}")]
        labels = (self.spec.name, str(self.lane))
        OLDEST_UNACKED.labels(*labels).set_function(lambda: self.oldest_wait(time.monotonic()))
        STALLED.labels(*labels).set_function(lambda: float(self.stalled(time.monotonic())))

    async def stop(self) -> None:
        if self.channel is not None and not self.channel.is_closed and self.queue is not None and self.tag:
            with contextlib.suppress(*CHANNEL_ERRORS):
                await self.queue.cancel(self.tag)
        # Let the batches in hand finish, so their work commits and their acks go out before the channel
        # closes; deliveries not started yet go back to the queue when it does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), 30)
        for worker in self.workers:
            worker.cancel()
        for worker in self.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self.channel is not None and not self.channel.is_closed:
            with contextlib.suppress(*CHANNEL_ERRORS):
                await self.channel.close()

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        arrived, first = await self.inbox.get()
        self.in_hand_since = arrived
        batch = [first]
        size = len(first.body)
        budget = self.batch_bytes or math.inf
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_size and size < budget:
            if self.inbox.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    _, message = await asyncio.wait_for(self.inbox.get(), remaining)
                except TimeoutError:
                    break
            else:
                _, message = self.inbox.get_nowait()
            batch.append(message)
            size += len(message.body)
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            self.busy += 1
            self.idle.clear()
            try:
                await self._handle_raw(batch)
            finally:
                self.in_hand_since = None
                self.busy -= 1
                if self.busy == 0:
                    self.idle.set()

    async def _handle_raw(self, batch: list[AbstractIncomingMessage]) -> None:
        deliveries: list[Delivery] = []
        for message in batch:
            try:
                envelope = decode(message.body)
            except ValidationError as exc:
                await self._fail(message, 0, PermanentError(f"not a Vigil envelope: {exc.errors()[:3]}"))
                continue
            deliveries.append(Delivery(envelope, message, attempts_of(message)))
        if deliveries:
            await self._handle(deliveries)

    async def _handle(self, deliveries: list[Delivery]) -> None:
        started = time.perf_counter()
        pause = 0.5
        while True:
            try:
                await self.handler(deliveries)
                break
            except Exception as exc:
                if not (isinstance(exc, BrokerUnavailable) or self.is_outage(exc)):
                    await self._handle_failure(deliveries, exc)
                    return
                # The database or broker is down: no message is at fault, so no attempt is counted and nothing
                # is requeued (a redelivery would count towards the parking limit). Hold the batch, try again.
                log.warning(
                    "dependency unavailable, holding the batch",
                    extra={"queue": self.spec.name, "size": len(deliveries), "error": repr(exc), "retry_in_s": pause},
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10)
        HANDLE_SECONDS.labels(self.spec.name).observe(time.perf_counter() - started)
        # Everything this lane received before the batch's last delivery is settled by now (in order), so one
        # `multiple` ack covers the batch: one frame instead of one per message.
        await self._settle(deliveries[-1].message.ack(multiple=True))
        CONSUMED.labels(self.spec.name, "ok").inc(len(deliveries))

    async def _handle_failure(self, deliveries: list[Delivery], exc: Exception) -> None:
        """A batch failed for a reason of its own: halve it until the message at fault is alone, which is retried
        or parked, while the others commit (a few transactions for one bad message among hundreds)."""
        if len(deliveries) == 1:
            parts = self.split(deliveries[0].envelope) if self.split is not None else []
            if parts:
                await self._resend_parts(deliveries[0].message, parts, exc)
            else:
                await self._fail(deliveries[0].message, deliveries[0].attempts, exc)
            return
        SPLITS.labels(self.spec.name).inc()
        log.warning(
            "batch failed, splitting it to find the message at fault",
            extra={"queue": self.spec.name, "size": len(deliveries), "error": repr(exc)[:1000]},
        )
        middle = len(deliveries) // 2
        await self._handle(deliveries[:middle])
        await self._handle(deliveries[middle:])

    async def _rescheduled(self, message: AbstractIncomingMessage, sending: Awaitable[str]) -> str | None:
        """The outcome of sending a failed message on (retried, parked, split); None when the broker did not take it:
        the message is then left to the broker, which redelivers it after a pause."""
        try:
            return await sending
        except BrokerUnavailable as exc:
            log.error("could not reschedule a failed message", extra={"error": str(exc)})
            await asyncio.sleep(1)
            await self._settle(message.nack(requeue=True))
            return None

    async def _resend_parts(
        self, message: AbstractIncomingMessage, parts: list[tuple[str, bytes]], error: BaseException
    ) -> None:
        """A message of several items failed: its items come back as messages of their own, so that the one at fault
        fails alone (and is retried or parked) while the others are handled."""
        outcome = await self._rescheduled(message, self.retries.resend_parts(message, self.spec.name, parts))
        if outcome is None:
            return
        log.warning(
            "message failed, its items sent round one by one",
            extra={
                "queue": self.spec.name,
                "message_id": message.message_id,
                "parts": len(parts),
                "error": f"{type(error).__name__}: {error}"[:1000],
            },
        )
        await self._settle(message.ack())
        CONSUMED.labels(self.spec.name, outcome).inc()

    async def _fail(self, message: AbstractIncomingMessage, attempts: int, error: BaseException) -> None:
        outcome = await self._rescheduled(message, self.retries.retry_or_park(message, attempts, self.spec.name, error))
        if outcome is None:
            return
        level = logging.ERROR if outcome == "parked" else logging.WARNING
        log.log(
            level,
            f"message {outcome}",
            extra={
                "queue": self.spec.name,
                "message_id": message.message_id,
                "attempts": attempts + 1,
                "error": f"{type(error).__name__}: {error}",
            },
            exc_info=error if level == logging.ERROR and not isinstance(error, PermanentError) else None,
        )
        await self._settle(message.ack())
        CONSUMED.labels(self.spec.name, outcome).inc()

    async def _settle(self, settling: Awaitable[None]) -> None:
        self.settled_at = time.monotonic()
        # After a connection loss the broker has already requeued the message; the ack has nowhere to go.
        with contextlib.suppress(*CHANNEL_ERRORS):
            await settling
