"""Confirmed publishing of a whole request at once: every message of a webhook goes to RabbitMQ in one
socket write on a channel of ingest's own, and the request waits for every confirm.

Why not `Broker.publish_many`: it publishes message by message through aio-pika, which writes and drains
the socket once per message; at webhooks of 50 alerts that was most of ingest's CPU (see bench/ingest.py).
The frames and confirm bookkeeping here are aiormq's own (`Channel.basic_publish` does the same per
message); what changes is that one request's messages share one write. The channel is opened from the
Broker's robust connection, so aio-pika restores it after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.header import ContentHeader

from services.ingest.translate import Publication
from shared.messaging import Broker, BrokerUnavailable

log = logging.getLogger(__name__)

PERSISTENT = 2
CHANNEL_ERRORS = (AMQPError, aiormq.exceptions.AMQPError, OSError, RuntimeError)


class BatchPublisher:
    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()

    async def publish(self, publications: Sequence[Publication]) -> None:
        """Returns once the broker confirmed every message; raises BrokerUnavailable otherwise.

        A message the broker could not route (mandatory) or refused (nack) fails the whole request, which
        the sender then retries: some messages may then arrive twice, which consumers tolerate (at least once).
        """
        if not publications:
            return
        if not self.broker.ready:
            raise BrokerUnavailable("not connected to the broker")
        payload_frames = [_frames(p) for p in publications]
        try:
            async with asyncio.timeout(self.timeout_s):
                channel = await self._underlay()
                confirmations = await _send(channel, payload_frames, [str(p.envelope.id) for p in publications])
                results = await asyncio.gather(*confirmations, return_exceptions=True)
        except TimeoutError:
            raise BrokerUnavailable(f"no confirm from the broker within {self.timeout_s}s") from None
        except CHANNEL_ERRORS as exc:
            raise BrokerUnavailable(f"publishing failed: {exc!r}") from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerUnavailable(f"broker did not take {len(failures)} of {len(results)} messages: {failures[0]}")

    async def _underlay(self) -> aiormq.abc.AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            async with self._opening:
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self.broker.connection.channel(publisher_confirms=True, on_return_raises=True)
        return await self._channel.get_underlay_channel()

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*CHANNEL_ERRORS):
                await self._channel.close()


def _frames(publication: Publication) -> tuple[bytes, list[Any]]:
    envelope = publication.envelope
    body = envelope.model_dump_json(by_alias=True).encode()
    properties = spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=str(envelope.id),
        message_type=envelope.type,
        timestamp=_whole_seconds(envelope.occurred_at),
        app_id=envelope.producer,
    )
    method = spec.Basic.Publish(exchange=publication.exchange, routing_key=publication.routing_key, mandatory=True)
    return body, [method, ContentHeader(properties=properties, body_size=len(body))]


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


async def _send(
    channel: aiormq.abc.AbstractChannel, messages: list[tuple[bytes, list[Any]]], message_ids: list[str]
) -> list[asyncio.Future[Any]]:
    real: aiormq.Channel = channel  # type: ignore[assignment]
    frames: list[Any] = []
    for body, head in messages:
        frames += head
        frames += real._split_body(body) if body else []
    # Encoded before any delivery tag is taken: a frame that cannot be encoded must not leave the channel's
    # count of published messages ahead of the broker's, or every later confirm would match the wrong one.
    chunk = ChannelFrame.marshall(channel_number=real.number, frames=frames)
    confirmations: list[asyncio.Future[Any]] = []
    async with real.lock:
        first_tag = real.delivery_tag + 1
        for offset, message_id in enumerate(message_ids):
            tag = first_tag + offset
            confirmation = real.create_future()
            real.confirmations[tag] = confirmation
            # aiormq finds the publication a Basic.Return refers to by message id.
            real.message_id_delivery_tag[message_id] = tag
            confirmation.add_done_callback(partial(_forget, real, message_id, tag))
            confirmations.append(confirmation)
        real.delivery_tag = first_tag + len(message_ids) - 1
        try:
            await real.write_queue.put(chunk)
        except BaseException:
            # Not written: give the sequence numbers back while still holding the lock.
            real.delivery_tag = first_tag - 1
            for offset, message_id in enumerate(message_ids):
                real.confirmations.pop(first_tag + offset, None)
                real.message_id_delivery_tag.pop(message_id, None)
            for confirmation in confirmations:
                confirmation.cancel()
            raise
    return confirmations


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)
