"""What Vigil declares on RabbitMQ, declared idempotently by every service at start (so a message published before
its consumer ever ran still waits in its queue):

- topic exchanges `vigil.alerts`, `vigil.incidents`, `vigil.commands`;
- one durable quorum queue per consuming service (`vigil.correlator`, `vigil.enricher`, `vigil.reporter`);
- for each such queue, delay queues `<queue>.retry.<ms>` on the direct exchange `vigil.retry`: a failed message
  waits there (queue TTL) and is dead-lettered back to its queue;
- a parking queue `<queue>.parking` on the direct exchange `vigil.parking` for poison messages: after
  `max_attempts` failures, an undecodable body, or (broker-side backstop) a message whose delivery killed its
  consumer too often (`x-delivery-limit`). Parked messages wait for a person; none is dropped.

A retry queue dead-letters back to its service queue at-least-once: it keeps a dead-lettered message until the
target queue confirmed it, so a broker restart or a missing target delays it and never drops it (that takes
`x-overflow: reject-publish` as well). A consumer parks a message by publishing it with a confirm; the service queue's
own dead-lettering to parking is only the broker's backstop (see `service_queue_arguments`).

Queues declared by an older Vigil without those arguments cannot be changed in place (RabbitMQ refuses a declare
with other arguments): `upgrade_queue` replaces such a queue once it is empty and has no consumer, one service at a
time, with a holding queue taking what is published meanwhile. A queue in use is left as it is (logged, and counted
in `vigil_topology_outdated_queues`) until a later start finds it idle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue
from prometheus_client import Gauge

from shared.contracts import ALERTS_EXCHANGE, COMMANDS_EXCHANGE, INCIDENTS_EXCHANGE

log = logging.getLogger(__name__)

TOPIC_EXCHANGES = (ALERTS_EXCHANGE, INCIDENTS_EXCHANGE, COMMANDS_EXCHANGE)
RETRY_EXCHANGE = "vigil.retry"
PARKING_EXCHANGE = "vigil.parking"
# Internal requests for work, one message per piece of work (services/correlator/store.py: an incident to enrich),
# apart from the incident events subscribers see.
WORK_EXCHANGE = "vigil.work"
ENRICH_ROUTING_KEY = "enrich"
DIRECT_EXCHANGES = (RETRY_EXCHANGE, PARKING_EXCHANGE, WORK_EXCHANGE)
# Broker-side backstop for a message that crashes its consumer before it can be retried or parked.
DELIVERY_LIMIT = 20
# An exclusive queue: only one connection at a time may hold it, so only one service upgrades queues at a time.
UPGRADE_LOCK = "vigil.topology.upgrade-lock"
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

OUTDATED = Gauge(
    "vigil_topology_outdated_queues",
    "Queues declared by an older Vigil (no at-least-once dead-lettering) that held messages at start",
)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[tuple[str, str], ...]
    # Bindings an older Vigil made, removed at every start (unbinding one that is gone is no error).
    retired: tuple[tuple[str, str], ...] = ()


CORRELATOR_QUEUE = QueueSpec(
    "vigil.correlator",
    ((ALERTS_EXCHANGE, "alert.#"), (ALERTS_EXCHANGE, "alerts.#"), (COMMANDS_EXCHANGE, "command.#")),
)
# Not every incident event: in a storm of alerts across many hosts nearly every alert moves an incident, and the
# enricher received ~50,000 events to skip for 3,000 enrichments. The correlator requests one enrichment per incident
# at a time instead (services/correlator/store.py).
ENRICHER_QUEUE = QueueSpec(
    "vigil.enricher",
    ((WORK_EXCHANGE, ENRICH_ROUTING_KEY),),
    retired=(
        (INCIDENTS_EXCHANGE, "incident.opened.#"),
        (INCIDENTS_EXCHANGE, "incident.updated.#"),
        (INCIDENTS_EXCHANGE, "incident.reopened.#"),
        (INCIDENTS_EXCHANGE, "incident.resolved.#"),
    ),
)
REPORTER_QUEUE = QueueSpec(
    "vigil.reporter",
    ((INCIDENTS_EXCHANGE, "incident.enriched.#"), (INCIDENTS_EXCHANGE, "incident.resolved.#")),
)
SERVICE_QUEUES = (CORRELATOR_QUEUE, ENRICHER_QUEUE, REPORTER_QUEUE)


def retry_queue_name(queue: str, delay_ms: int) -> str:
    return f"{queue}.retry.{delay_ms}"


def service_queue_arguments(name: str) -> dict[str, Any]:
    # Not at-least-once: `reject-publish` costs every publish to a service queue (ingest took 20 % fewer single-alert
    # webhooks a second in bench.ingest), and this queue dead-letters only as the broker's backstop, after a message
    # killed its consumer DELIVERY_LIMIT times; consumers park a failed message themselves, with a confirm.
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": PARKING_EXCHANGE,
        "x-dead-letter-routing-key": name,
    }


def retry_queue_arguments(queue: str, delay_ms: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_ms,
        # The default exchange routes by queue name: back to where the message failed.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        **AT_LEAST_ONCE,
    }


@dataclass(frozen=True)
class Declared:
    """A queue to declare: its arguments and the bindings that feed it."""

    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...]
    retired: tuple[tuple[str, str], ...] = ()


def queues_of(spec: QueueSpec, retry_delays_ms: Sequence[int]) -> list[Declared]:
    """A service's retry queues, then the service queue."""
    retries = [
        Declared(
            retry_queue_name(spec.name, delay),
            retry_queue_arguments(spec.name, delay),
            ((RETRY_EXCHANGE, retry_queue_name(spec.name, delay)),),
        )
        for delay in retry_delays_ms
    ]
    return [*retries, Declared(spec.name, service_queue_arguments(spec.name), spec.bindings, spec.retired)]


async def declare_topology(connection: AbstractConnection, retry_delays_ms: Sequence[int]) -> None:
    async with connection.channel() as channel:
        exchanges: dict[str, AbstractExchange] = {}
        for name in TOPIC_EXCHANGES:
            exchanges[name] = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        for name in DIRECT_EXCHANGES:
            exchanges[name] = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
        for spec in SERVICE_QUEUES:
            parked = await channel.declare_queue(
                f"{spec.name}.parking", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await parked.bind(exchanges[PARKING_EXCHANGE], spec.name)
    outdated = 0
    for spec in SERVICE_QUEUES:
        for queue in queues_of(spec, retry_delays_ms):
            if not await ensure_queue(connection, queue):
                outdated += 1
    OUTDATED.set(outdated)


async def ensure_queue(connection: AbstractConnection, queue: Declared) -> bool:
    """Declare and bind `queue`; False when an older declaration in use had to be kept for now."""
    for _ in range(60):
        try:
            async with connection.channel() as channel:
                await _declare(channel, queue)
            # An upgrade interrupted after the old queue went may have left its holding queue behind.
            await _move_holding(connection, queue)
            return True
        except aiormq.exceptions.ChannelPreconditionFailed:
            pass  # declared before with other arguments
        try:
            async with connection.channel() as lock:
                await lock.declare_queue(UPGRADE_LOCK, exclusive=True, auto_delete=True)
                return await upgrade_queue(connection, queue)
        except aiormq.exceptions.ChannelLockedResource:
            await asyncio.sleep(0.5)  # another service is upgrading: its work may make ours unnecessary
    raise RuntimeError(f"queue {queue.name}: could not declare or upgrade it in 30 s")


async def _declare(channel: AbstractChannel, queue: Declared) -> AbstractQueue:
    declared = await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)
    for exchange, key in queue.bindings:
        await declared.bind(exchange, key)
    for exchange, key in queue.retired:
        await declared.unbind(exchange, key)
    return declared


def _holding(queue: Declared) -> str:
    return f"{queue.name}.upgrading"


async def upgrade_queue(connection: AbstractConnection, queue: Declared) -> bool:
    """Replace a queue declared with other arguments, once it is empty and unused; False (and a warning) if not."""
    async with connection.channel() as channel:
        existing = await channel.declare_queue(queue.name, passive=True)
        found = existing.declaration_result
        if found.message_count or found.consumer_count:
            log.warning(
                "queue declared by an older Vigil is in use: kept as it is until a start finds it empty and unused",
                extra={"queue": queue.name, "messages": found.message_count, "consumers": found.consumer_count},
            )
            return False
        # What is published while the queue is replaced waits here, then moves over (a copy may arrive twice:
        # consumers are idempotent).
        spare = await channel.declare_queue(_holding(queue), durable=True, arguments={"x-queue-type": "quorum"})
        for exchange, key in queue.bindings:
            await spare.bind(exchange, key)
    async with connection.channel() as channel:
        # Quorum queues take neither `if_empty` nor `if_unused`: both were checked a moment ago, and a message
        # published since then through the queue's bindings is in the holding queue too.
        await channel.queue_delete(queue.name)
        await _declare(channel, queue)
    moved = await _move_holding(connection, queue)
    log.warning("queue upgraded to at-least-once dead-lettering", extra={"queue": queue.name, "moved": moved})
    return True


async def _move_holding(connection: AbstractConnection, queue: Declared) -> int:
    """Move what an upgrade's holding queue took in to the queue, then delete it; the number moved."""
    try:
        async with connection.channel() as channel:
            spare = await channel.declare_queue(_holding(queue), passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0  # the usual case: no upgrade under way
    moved = 0
    async with connection.channel() as channel:  # publisher confirms: a message is acked once its copy is stored
        spare = await channel.declare_queue(_holding(queue), passive=True)
        for exchange, key in queue.bindings:
            await spare.unbind(exchange, key)
        while (message := await spare.get(no_ack=False, fail=False)) is not None:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=message.headers,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                    type=message.type,
                    app_id=message.app_id,
                ),
                routing_key=queue.name,
            )
            await message.ack()
            moved += 1
        await channel.queue_delete(_holding(queue))
    return moved
