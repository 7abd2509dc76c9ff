"""The connection to RabbitMQ and confirmed publishing on it.

One robust connection, made in the background and retried until the broker answers; at each connect the topology
is declared (`topology.py`) and a publishing channel with confirms is opened. A message the broker did not take
(unreachable, refused, unroutable when mandatory, or no confirm in time) is `BrokerUnavailable`.

With several URLs (a cluster's nodes, `VIGIL_AMQP_URL` comma-separated) every connection attempt goes to the next
one: the first that answers is used, and when its node goes away aio-pika's reconnect moves on to another, restoring
the channels and consumers there. Publishes caught by the move get no confirm and are `BrokerUnavailable` (ingest
answers 503), so none is taken for stored that the cluster did not take; the queues are quorum queues, so what a
node confirmed survives it.

A nack replaces the publishing channel (`is_nack`, `_replace_channel`): RabbitMQ 3.10 keeps nacking, for minutes, every
publish on a channel that first published to a quorum queue while the queue was electing a leader (after a node was
lost), where a new channel is confirmed at once (tests/devstack/test_rabbitmq_cluster.py shows both).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.connection import make_url
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError
from pamqp.commands import Basic
from yarl import URL

from shared import broker_urls
from shared.contracts import Envelope, RawEnvelope
from shared.messaging.topology import DIRECT_EXCHANGES, TOPIC_EXCHANGES, declare_topology

log = logging.getLogger(__name__)

# What a lost or closing connection or channel raises, from aio-pika, aiormq or the socket.
CHANNEL_ERRORS = (AMQPError, aiormq.exceptions.AMQPError, RuntimeError, OSError)


class BrokerUnavailable(RuntimeError):
    """The broker did not take a message: unreachable, refused it, or did not confirm in time."""


def is_nack(exc: BaseException) -> bool:
    """The broker refused a published message (basic.nack), as opposed to returning it as unroutable."""
    return isinstance(exc, DeliveryError) and not isinstance(exc, PublishError) and isinstance(exc.frame, Basic.Nack)


# Envelopes of any model: `Envelope` is invariant in its model, and publishing needs only its JSON.
def encode(envelope: Envelope[Any]) -> aio_pika.Message:
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


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over several brokers: each connection attempt, first or reconnect, dials the next URL.

    aio-pika's robust connection redials its one URL; the hook is the method its reconnect loop calls to dial
    (`__connect_transport`, reached through its mangled name), so channel and consumer restoring stay aio-pika's.
    tests/shared/test_broker_failover.py fails if a new aio-pika stops calling it.
    """

    def __init__(self, urls: Sequence[URL], *, first: int = 0, **kwargs: Any) -> None:
        super().__init__(urls[first % len(urls)], **kwargs)
        self._urls = list(urls)
        self._attempt = first

    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._urls[self._attempt % len(self._urls)]
        self._attempt += 1
        await _DIAL(self)


_DIAL = aio_pika.RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]


@dataclass
class BrokerConnection:
    """One robust connection and its confirmed publishing channel; `url` may list several brokers (comma-separated)."""

    url: str
    producer: str
    # The delay queues to declare (retries and deferrals), for the topology.
    delays_ms: Sequence[int] = ()
    publish_timeout_s: float = 5.0
    _connection: AbstractRobustConnection | None = None
    _channel: AbstractChannel | None = None
    _exchanges: dict[str, AbstractExchange] = field(default_factory=dict)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _connector: asyncio.Task[None] | None = None
    _replacing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """Connect in the background, retrying until the broker answers; `ready` says when."""
        self._connector = asyncio.create_task(self._connect_forever(), name="broker-connect")

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _connect_forever(self) -> None:
        delay = 0.5
        attempt = 0
        while True:
            try:
                await self._connect(first=attempt)
                return
            except (TimeoutError, OSError, AMQPError, aiormq.exceptions.AMQPError) as exc:
                log.warning("broker not reachable, retrying", extra={"error": str(exc), "in_s": delay})
                attempt += 1
                if attempt % len(broker_urls.split(self.url)) == 0:  # every URL tried once: wait before the next round
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10)

    async def _connect(self, *, first: int = 0) -> None:
        # Built here rather than by `aio_pika.connect_robust`, which drops the connection object when the first
        # connect fails: its `__del__` then schedules `close()` on whatever loop is current, and warns
        # "coroutine 'RobustConnection.close' was never awaited" when there is none.
        connection = FailoverConnection(
            # aio-pika's default of 5 s between attempts adds up to 5 s of refused webhooks after a broker restart.
            [make_url(url, reconnect_interval=1) for url in broker_urls.split(self.url)],
            first=first,
            client_properties={"connection_name": self.producer},
        )
        try:
            await connection.connect(timeout=10)
            await declare_topology(connection, sorted(set(self.delays_ms)))
            channel, exchanges = await self._publishing_channel(connection)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._channel, self._exchanges = connection, channel, exchanges
        self._connected.set()
        log.info("broker connected")

    @staticmethod
    async def _publishing_channel(
        connection: AbstractRobustConnection,
    ) -> tuple[AbstractChannel, dict[str, AbstractExchange]]:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges = {}
        for name in (*TOPIC_EXCHANGES, *DIRECT_EXCHANGES):
            exchanges[name] = await channel.get_exchange(name, ensure=False)
        return channel, exchanges

    async def _replace_channel(self, nacked: AbstractChannel) -> None:
        """A new publishing channel for one the broker nacked on (once, however many publishes were nacked)."""
        async with self._replacing:
            if self._channel is not nacked or self._connection is None:
                return
            try:
                self._channel, self._exchanges = await self._publishing_channel(self._connection)
            except CHANNEL_ERRORS as exc:
                log.warning("could not replace the nacked publishing channel", extra={"error": repr(exc)})
                return
            log.warning("the broker nacked a publish: publishing on a new channel")
        with contextlib.suppress(*CHANNEL_ERRORS):
            await nacked.close()

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

    async def open_channel(self, *, publisher_confirms: bool, on_return_raises: bool = False) -> AbstractChannel:
        """A channel of the caller's own on the robust connection: aio-pika reopens it, with its consumers and
        declared queues, after a reconnect."""
        return await self.connection.channel(publisher_confirms=publisher_confirms, on_return_raises=on_return_raises)

    async def publish(
        self, exchange: str, routing_key: str, envelope: Envelope[Any], *, mandatory: bool = True
    ) -> None:
        """Publish and wait for the broker's confirm; `mandatory` makes an unroutable message an error."""
        await self.publish_message(exchange, routing_key, encode(envelope), mandatory=mandatory)

    async def publish_message(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool = True
    ) -> None:
        if not self.ready:
            raise BrokerUnavailable("not connected to the broker")
        channel = self._channel
        try:
            await self._exchanges[exchange].publish(
                message, routing_key, mandatory=mandatory, timeout=self.publish_timeout_s
            )
        except (DeliveryError, PublishError) as exc:
            if is_nack(exc) and channel is not None:
                await self._replace_channel(channel)
            raise BrokerUnavailable(f"broker refused the message: {exc}") from exc
        except (TimeoutError, *CHANNEL_ERRORS) as exc:
            raise BrokerUnavailable(f"no confirm from the broker: {exc!r}") from exc

    async def publish_many(self, items: Sequence[tuple[str, str, Envelope[Any]]], *, mandatory: bool = True) -> None:
        """Publish concurrently (the broker confirms in batches); raises if any one is not confirmed."""
        results = await asyncio.gather(
            *(self.publish(ex, key, env, mandatory=mandatory) for ex, key, env in items),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._connection is not None:
            await self._connection.close()
        self._connected.clear()
