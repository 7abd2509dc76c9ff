"""How ingest hands a request's messages to RabbitMQ: one boundary, `Publisher`, with two ways behind it.

- `FramePublisher` (frame_publisher.py), the fast path: AMQP frames written by ingest itself, one socket write
  per request, confirms tracked in aiormq's own bookkeeping.
- `ConfirmedPublisher`: aio-pika's own publish with publisher confirms, message by message on the Broker's channel;
  several times slower at large webhooks, and independent of aiormq's internals.

Either way a request is answered only once the broker confirmed every message. `open_publisher` takes the fast
path unless told not to; the fast path gives way to the other, for the rest of the process, the first time its
channel turns out not to be one it can write frames on (`FramesUnsupported`, raised before anything is sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import aio_pika

from services.ingest.frame_publisher import FramePublisher, FramesUnsupported
from services.ingest.translate import MESSAGE_TYPE, PRODUCER, OutgoingMessage
from shared.messaging.broker import Broker
from shared.messaging.connection import BrokerUnavailable

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        """Returns once the broker confirmed every message; raises BrokerUnavailable otherwise."""

    async def close(self) -> None: ...


def as_message(message: OutgoingMessage) -> aio_pika.Message:
    """The message the fast path writes (amqp_frames.py), as aio-pika's: the same properties, no others."""
    return aio_pika.Message(
        message.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        timestamp=message.occurred_at,
        type=MESSAGE_TYPE,
        app_id=PRODUCER,
    )


class ConfirmedPublisher:
    """aio-pika's publish on the Broker's confirming channel, every message mandatory and confirmed."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        # Concurrently: the broker confirms what arrives together in one go, as for the fast path.
        results = await asyncio.gather(
            *(self.broker.publish_message(m.exchange, m.routing_key, as_message(m)) for m in messages),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, BrokerUnavailable):
                raise failure
        if failures:
            raise BrokerUnavailable(f"broker did not take {len(failures)} of {len(results)} messages: {failures[0]}")

    async def close(self) -> None:
        """Nothing of its own to close: the channel is the Broker's."""


class FallbackPublisher:
    """The fast path while its channel allows it, then `fallback` for good."""

    def __init__(self, fast: FramePublisher, fallback: Publisher) -> None:
        self.fast: FramePublisher | None = fast
        self.fallback = fallback

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        fast = self.fast
        if fast is not None:
            try:
                await fast.publish_batch(messages)
                return
            except FramesUnsupported as exc:
                if self.fast is fast:  # the first of the requests that found out
                    self.fast = None
                    log.warning("publishing through aio-pika: the fast path cannot be used", extra={"reason": str(exc)})
                    await fast.close()
        await self.fallback.publish_batch(messages)

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()
        await self.fallback.close()


def open_publisher(broker: Broker, timeout_s: float, *, frames: bool = True) -> Publisher:
    """The fast path falling back to aio-pika's publish, or (`frames=False`) aio-pika's publish only."""
    confirmed = ConfirmedPublisher(broker)
    if not frames:
        return confirmed
    return FallbackPublisher(FramePublisher(broker, timeout_s), confirmed)
