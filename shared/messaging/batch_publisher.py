"""Publishing a batch of JSON messages with one outcome per message (None: confirmed; else why not), one boundary,
`BatchPublisher`, with two ways behind it.

- `FramePublisher` (frame_publisher.py), the fast path: AMQP frames written by Vigil itself, one socket write per
  batch, confirms tracked in aiormq's own bookkeeping.
- `AioPikaPublisher`: aio-pika's own publish with publisher confirms, message by message on the Broker's channel;
  several times slower at large batches, and independent of aiormq's internals.

`open_batch_publisher` takes the fast path unless told not to; the fast path gives way to the other, for the rest of
the process, the first time its channel turns out not to be one it can write frames on (`FramesUnsupported`, raised
before anything is sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import aio_pika

from shared.messaging.amqp_frames import CONTENT_TYPE, JsonMessage
from shared.messaging.broker import Broker
from shared.messaging.frame_publisher import FramePublisher, FramesUnsupported, Outcome

log = logging.getLogger(__name__)


class BatchPublisher(Protocol):
    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        """One outcome per message, in order: None once the broker confirmed it, else the reason it was not
        (BrokerUnavailable when the broker did not take it)."""

    async def close(self) -> None: ...


def as_message(message: JsonMessage) -> aio_pika.Message:
    """The message as aio-pika's, with the properties the fast path writes (amqp_frames.py)."""
    return aio_pika.Message(
        message.body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


class AioPikaPublisher:
    """aio-pika's publish on the Broker's confirming channel."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        # Concurrently: the broker confirms what arrives together in one go, as for the fast path.
        return await asyncio.gather(
            *(
                self.broker.publish_message(m.exchange, m.routing_key, as_message(m), mandatory=m.mandatory)
                for m in messages
            ),
            return_exceptions=True,
        )

    async def close(self) -> None:
        """Nothing of its own to close: the channel is the Broker's."""


class FallbackPublisher:
    """The fast path while its channel allows it, then `fallback` for good."""

    def __init__(self, fast: FramePublisher, fallback: BatchPublisher) -> None:
        self.fast: FramePublisher | None = fast
        self.fallback = fallback

    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        fast = self.fast
        if fast is not None:
            try:
                return await fast.publish(messages)
            except FramesUnsupported as exc:
                if self.fast is fast:  # the first of the batches that found out
                    self.fast = None
                    log.warning(
                        "publishing through aio-pika: the fast path cannot be used",
                        extra={"reason": str(exc), "publisher": fast.name},
                    )
                    await fast.close()
        return await self.fallback.publish(messages)

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()
        await self.fallback.close()


def open_batch_publisher(
    broker: Broker, timeout_s: float, *, name: str, frames: bool = True, aio_pika_defaults: bool = False
) -> BatchPublisher:
    """The fast path falling back to aio-pika's publish, or (`frames=False`) aio-pika's publish only.

    `name` tells the publisher's logs and task apart; `aio_pika_defaults` (see `JsonFrames`) for a publisher whose
    subscribers used to get its messages from aio-pika."""
    confirmed = AioPikaPublisher(broker)
    if not frames:
        return confirmed
    fast = FramePublisher(broker, timeout_s, name=name, aio_pika_defaults=aio_pika_defaults)
    return FallbackPublisher(fast, confirmed)
