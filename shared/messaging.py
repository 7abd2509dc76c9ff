"""RabbitMQ plumbing on aio-pika: confirmed publishing, and consumers with batches, delayed retries and parking.

What is declared on the broker (exchanges, queues, dead-lettering) is in `shared/topology.py`. A consumer tells an
outage from a bad message by the error (`is_outage`): an outage holds the batch and tries again without counting an
attempt; anything else is the failure of the messages that caused it, found by splitting the batch, while the rest
commits. A lane that holds messages without settling any for `stall_after_s` is stalled: `/readyz` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
import aiormq
import psycopg
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ValidationError

from shared.contracts import Envelope, RawEnvelope
from shared.topology import (
    CORRELATOR_QUEUE,
    ENRICHER_QUEUE,
    PARKING_EXCHANGE,
    REPORTER_QUEUE,
    RETRY_EXCHANGE,
    SERVICE_QUEUES,
    TOPIC_EXCHANGES,
    QueueSpec,
    declare_topology,
    retry_queue_name,
)

__all__ = [
    "CORRELATOR_QUEUE",
    "ENRICHER_QUEUE",
    "REPORTER_QUEUE",
    "SERVICE_QUEUES",
    "Broker",
    "BrokerUnavailable",
    "Delivery",
    "PendingCopies",
    "PermanentError",
    "QueueSpec",
    "is_outage",
]

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-vigil-attempts"
ERROR_HEADER = "x-vigil-error"

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

# PostgreSQL errors that say the server is unreachable, going away or out of resources: not the message's fault.
# Anything else the server says is about the statement, hence about the messages that led to it.
OUTAGE_SQLSTATE_CLASSES = ("08", "53")  # connection exception, insufficient resources
OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now


class BrokerUnavailable(RuntimeError):
    """The broker did not take a message: unreachable, refused it, or did not confirm in time."""


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it is parked at once, not retried."""


@dataclass
class Delivery:
    """One decoded message handed to a handler."""

    envelope: RawEnvelope
    message: AbstractIncomingMessage
    attempts: int


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


def encode(envelope: Envelope[BaseModel]) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.model_dump_json(by_alias=True).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.id),
        type=envelope.type,
        timestamp=envelope.occurred_at,
        app_id=envelope.producer,
    )


def decode(body: bytes) -> RawEnvelope:
    return RawEnvelope.model_validate_json(body)


def _copy(delivery: Delivery, headers: dict[str, object]) -> aio_pika.Message:
    message = delivery.message
    return aio_pika.Message(
        message.body,
        headers={**(message.headers or {}), **headers},
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        app_id=message.app_id,
    )


@dataclass
class PendingCopies:
    """When the copies this process deferred come back, per (queue, subject), on the monotonic clock.

    A copy is deliverable no earlier than `defer_ms` after its publish began, so it reads its subject's state
    after anything handled before then: a message about the same subject handled meanwhile may be dropped
    instead of deferred too, the copy will find what it would have found, and newer. Kept in memory: another
    replica's copies are unknown here, and a restart forgets them, which costs only a copy more."""

    back_at: dict[tuple[str, str], float] = field(default_factory=dict)
    # Copies already back are forgotten when the map reaches this size, which then doubles what is left: memory
    # stays bounded by the copies on their way, at a constant cost per copy however many there are.
    prune_at: int = 1024

    def covers(self, queue: str, subject: str, now: float) -> bool:
        return self.back_at.get((queue, subject), now) > now

    def add(self, queue: str, subject: str, back_at: float, now: float) -> None:
        if len(self.back_at) >= self.prune_at:
            self.back_at = {k: at for k, at in self.back_at.items() if at > now}
            self.prune_at = max(1024, 2 * len(self.back_at))
        self.back_at[(queue, subject)] = back_at

    def forget(self, queue: str, subject: str, back_at: float) -> None:
        """The copy due back at `back_at` was not sent after all (unless a later one replaced it)."""
        if self.back_at.get((queue, subject)) == back_at:
            del self.back_at[(queue, subject)]


@dataclass
class Broker:
    """One robust connection: a confirmed publishing channel and one channel per consumer."""

    url: str
    producer: str
    retry_delays_ms: Sequence[int] = (1_000, 10_000, 60_000)
    # How long `defer` holds a message back: consumers use it to coalesce bursts (see `defer`).
    defer_ms: int = 10_000
    max_attempts: int = 5
    prefetch: int = 200
    publish_timeout_s: float = 5.0
    stall_after_s: float = 120.0
    _connection: AbstractRobustConnection | None = None
    _channel: AbstractChannel | None = None
    _exchanges: dict[str, AbstractExchange] = field(default_factory=dict)
    _consumers: list[_Consumer] = field(default_factory=list)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _connector: asyncio.Task[None] | None = None
    _pending: PendingCopies = field(default_factory=PendingCopies)

    async def start(self) -> None:
        """Connect in the background, retrying until the broker answers; `ready` says when."""
        self._connector = asyncio.create_task(self._connect_forever(), name="broker-connect")

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._connect()
                return
            except (TimeoutError, OSError, AMQPError, aiormq.exceptions.AMQPError) as exc:
                log.warning("broker not reachable, retrying", extra={"error": str(exc), "in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _connect(self) -> None:
        # Built here rather than by `aio_pika.connect_robust`, which drops the connection object when the first
        # connect fails: its `__del__` then schedules `close()` on whatever loop is current, and warns
        # "coroutine 'RobustConnection.close' was never awaited" when there is none.
        connection = aio_pika.RobustConnection(
            # aio-pika's default of 5 s between attempts adds up to 5 s of refused webhooks after a broker restart.
            make_url(self.url, reconnect_interval=1),
            client_properties={"connection_name": self.producer},
        )
        try:
            await connection.connect(timeout=10)
            await declare_topology(connection, sorted({*self.retry_delays_ms, self.defer_ms}))
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for name in (*TOPIC_EXCHANGES, RETRY_EXCHANGE, PARKING_EXCHANGE):
                self._exchanges[name] = await channel.get_exchange(name, ensure=False)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel = connection, channel
        self._connected.set()
        log.info("broker connected")

    @property
    def ready(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BrokerUnavailable("not connected to the broker yet")
        return self._connection

    async def publish(
        self, exchange: str, routing_key: str, envelope: Envelope[BaseModel], *, mandatory: bool = True
    ) -> None:
        """Publish and wait for the broker's confirm; `mandatory` makes an unroutable message an error."""
        await self.publish_message(exchange, routing_key, encode(envelope), mandatory=mandatory)

    async def publish_message(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool = True
    ) -> None:
        if not self.ready:
            raise BrokerUnavailable("not connected to the broker")
        try:
            await self._exchanges[exchange].publish(
                message, routing_key, mandatory=mandatory, timeout=self.publish_timeout_s
            )
        except (DeliveryError, PublishError) as exc:
            raise BrokerUnavailable(f"broker refused the message: {exc}") from exc
        except (TimeoutError, AMQPError, aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
            raise BrokerUnavailable(f"no confirm from the broker: {exc!r}") from exc

    async def publish_many(
        self, items: Sequence[tuple[str, str, Envelope[BaseModel]]], *, mandatory: bool = True
    ) -> None:
        """Publish concurrently (the broker confirms in batches); raises if any one is not confirmed."""
        results = await asyncio.gather(
            *(self.publish(ex, key, env, mandatory=mandatory) for ex, key, env in items),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def consume(
        self,
        spec: QueueSpec,
        handler: BatchHandler,
        *,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        """Start consuming `spec`'s queue; returns once the consumers are registered with the broker.

        `concurrency` lanes, each its own channel with one batch in flight and its share of the prefetch window:
        a lane settles its deliveries in order, so a whole batch is acknowledged with one `multiple` ack.
        """
        await self.wait_connected()
        share = max(1, -(-self.prefetch // concurrency))
        for lane in range(concurrency):
            consumer = _Consumer(self, spec, handler, batch_size, batch_wait_s, prefetch=share, lane=lane)
            await consumer.start()
            self._consumers.append(consumer)

    def stalled_lanes(self, now: float | None = None) -> list[str]:
        """`<queue>/<lane>` of every lane that has held messages for `stall_after_s` without settling any."""
        now = time.monotonic() if now is None else now
        return [f"{c.spec.name}/{c.lane}" for c in self._consumers if c.stalled(now, self.stall_after_s)]

    async def retry_or_park(self, delivery: Delivery, queue: str, error: BaseException) -> str:
        """Send a failed message on to its next delay queue, or park it; returns the outcome."""
        attempts = delivery.attempts + 1
        permanent = isinstance(error, PermanentError)
        copy = _copy(delivery, {ATTEMPTS_HEADER: attempts, ERROR_HEADER: f"{type(error).__name__}: {error}"[:1000]})
        if permanent or attempts >= self.max_attempts:
            await self.publish_message(PARKING_EXCHANGE, queue, copy)
            return "parked"
        delay = self.retry_delays_ms[min(attempts - 1, len(self.retry_delays_ms) - 1)]
        await self.publish_message(RETRY_EXCHANGE, retry_queue_name(queue, delay), copy)
        return "retried"

    async def defer(self, delivery: Delivery, queue: str, *, subject: str | None = None) -> bool:
        """Hand the message back to `queue` after `defer_ms`, not counted as a failed attempt; False when it was
        dropped instead because a copy deferred earlier for the same `subject` is still to come back.

        For work that should not run more often than every `defer_ms` per subject (an incident growing in a storm):
        the handler defers the message and returns, and when it comes back it finds the latest state. Pass
        `subject` only when what the returning copy does depends on nothing but that latest state, so that one
        copy per interval serves every message about the subject (see `PendingCopies`).
        """
        started = time.monotonic()
        # A tenth short of the delay: RabbitMQ's millisecond clock must never let the copy come back while it
        # still counts as on its way, or it would be dropped on its own account.
        back_at = started + 0.9 * self.defer_ms / 1000
        if subject is not None:
            if self._pending.covers(queue, subject, started):
                return False
            # Counted before it is published, so that a message about the subject on another lane meanwhile is
            # dropped rather than sent round too. Should the publish fail, this message is retried and comes back
            # to read the state after whatever was dropped on its account.
            self._pending.add(queue, subject, back_at, started)
        try:
            await self.publish_message(RETRY_EXCHANGE, retry_queue_name(queue, self.defer_ms), _copy(delivery, {}))
        except BaseException:
            if subject is not None:
                self._pending.forget(queue, subject, back_at)
            raise
        return True

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.stop()
        self._consumers.clear()
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            await self._connection.close()
        self._connected.clear()


def is_outage(exc: BaseException) -> bool:
    """A failure of a server the handler depends on, not of the message: RabbitMQ or PostgreSQL unreachable, going
    away or out of resources, told by PostgreSQL's SQLSTATE and not by psycopg's exception class (which calls an
    index row too large, a statement timeout and a lost connection all `OperationalError`)."""
    if isinstance(exc, PoolTimeout | BrokerUnavailable):
        return True
    if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.errors.PipelineAborted):
        return False  # PipelineAborted follows an earlier error of the same work
    state = exc.sqlstate
    if state is None:
        # Raised by psycopg itself, not the server: the connection broke or could not be made, or a value could not
        # be converted (a DataError: the message's).
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in OUTAGE_SQLSTATE_CLASSES or state in OUTAGE_SQLSTATES


class _Consumer:
    """One lane: a channel whose deliveries are pulled into batches and handled one batch at a time; a failed batch
    is retried message by message to isolate the bad one. Deliveries are settled in the order they arrived."""

    def __init__(
        self,
        broker: Broker,
        spec: QueueSpec,
        handler: BatchHandler,
        batch_size: int,
        batch_wait_s: float,
        *,
        prefetch: int,
        lane: int,
    ) -> None:
        self.broker, self.spec, self.handler = broker, spec, handler
        self.batch_size, self.batch_wait_s, self.prefetch, self.lane = batch_size, batch_wait_s, prefetch, lane
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
            return now - self.inbox._queue[0][0]  # type: ignore[attr-defined]  # asyncio.Queue's deque, oldest first
        return 0.0

    def stalled(self, now: float, after_s: float) -> bool:
        return self.oldest_wait(now) >= after_s and now - self.settled_at >= after_s

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        await self.inbox.put((time.monotonic(), message))

    async def start(self) -> None:
        self.channel = await self.broker.connection.channel(publisher_confirms=False)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        # A passive declare, not get_queue(ensure=False): only declared queues are registered with the robust
        # channel, and only registered queues get their consumers back after the broker restarts.
        self.queue = await self.channel.declare_queue(self.spec.name, passive=True)
        self.tag = await self.queue.consume(self._receive, no_ack=False)
        self.workers = [asyncio.create_task(self._work(), name=f"consume-{self.spec.name}-{self.lane}")]
        labels = (self.spec.name, str(self.lane))
        OLDEST_UNACKED.labels(*labels).set_function(lambda: self.oldest_wait(time.monotonic()))
        after = self.broker.stall_after_s
        STALLED.labels(*labels).set_function(lambda: float(self.stalled(time.monotonic(), after)))

    async def stop(self) -> None:
        if self.channel is not None and not self.channel.is_closed and self.queue is not None and self.tag:
            with contextlib.suppress(AMQPError, aiormq.exceptions.AMQPError, RuntimeError, OSError):
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
            with contextlib.suppress(AMQPError, aiormq.exceptions.AMQPError, RuntimeError, OSError):
                await self.channel.close()

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        arrived, first = await self.inbox.get()
        self.in_hand_since = arrived
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_size:
            if not self.inbox.empty():
                batch.append(self.inbox.get_nowait()[1])
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append((await asyncio.wait_for(self.inbox.get(), remaining))[1])
            except TimeoutError:
                break
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
                bad = Delivery(envelope=None, message=message, attempts=0)  # type: ignore[arg-type]
                await self._fail(bad, PermanentError(f"not a Vigil envelope: {exc.errors()[:3]}"))
                continue
            deliveries.append(Delivery(envelope, message, _attempts(message)))
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
                if not is_outage(exc):
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
            await self._fail(deliveries[0], exc)
            return
        SPLITS.labels(self.spec.name).inc()
        log.warning(
            "batch failed, splitting it to find the message at fault",
            extra={"queue": self.spec.name, "size": len(deliveries), "error": repr(exc)[:1000]},
        )
        middle = len(deliveries) // 2
        await self._handle(deliveries[:middle])
        await self._handle(deliveries[middle:])

    async def _fail(self, delivery: Delivery, error: BaseException) -> None:
        try:
            outcome = await self.broker.retry_or_park(delivery, self.spec.name, error)
        except BrokerUnavailable as exc:
            # Not retried or parked: leave it to the broker, which redelivers it after a pause.
            log.error("could not reschedule a failed message", extra={"error": str(exc)})
            await asyncio.sleep(1)
            await self._settle(delivery.message.nack(requeue=True))
            return
        level = logging.ERROR if outcome == "parked" else logging.WARNING
        log.log(
            level,
            f"message {outcome}",
            extra={
                "queue": self.spec.name,
                "message_id": delivery.message.message_id,
                "attempts": delivery.attempts + 1,
                "error": f"{type(error).__name__}: {error}",
            },
            exc_info=error if level == logging.ERROR and not isinstance(error, PermanentError) else None,
        )
        await self._settle(delivery.message.ack())
        CONSUMED.labels(self.spec.name, outcome).inc()

    async def _settle(self, settling: Awaitable[None]) -> None:
        self.settled_at = time.monotonic()
        # After a connection loss the broker has already requeued the message; the ack has nowhere to go.
        with contextlib.suppress(AMQPError, aiormq.exceptions.AMQPError, RuntimeError, OSError):
            await settling


def _attempts(message: AbstractIncomingMessage) -> int:
    """Failed handlings so far, from our header; anything else there (a message from elsewhere) counts as none."""
    value = (message.headers or {}).get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
