"""Ingest's fast path (behind `publisher.Publisher`): every message of a webhook goes to RabbitMQ in one socket
write on a channel of ingest's own, and the request waits for every confirm.

Why not `Broker.publish_many`: it publishes message by message through aio-pika, which encodes with
pamqp and writes and drains the socket once per message; at webhooks of 50 alerts that was most of
ingest's CPU (bench/ingest.py). Here the frames are encoded by `amqp_frames` and handed to aiormq's writer
as one chunk, and the confirm bookkeeping is aiormq's own (`Channel.basic_publish` does the same per
message: take the next delivery tag, register a future under it and under the message id for returns).
Requests publishing at the same moment share a write too. The channel is opened from the Broker's robust
connection, so aio-pika restores it after a reconnect.

That bookkeeping is aiormq's, not a published API: should the channel not have it (another aiormq than the one
pinned in pyproject.toml), `FramesUnsupported` is raised before anything is sent, and `publisher.py` falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError
from aiormq.abc import ChannelFrame

from services.ingest.amqp_frames import JsonPublisherFrames
from services.ingest.translate import MESSAGE_TYPE, PRODUCER, OutgoingMessage
from shared.messaging.broker import Broker
from shared.messaging.connection import BrokerUnavailable, is_nack

log = logging.getLogger(__name__)

CHANNEL_ERRORS = (AMQPError, aiormq.exceptions.AMQPError, OSError, RuntimeError)
# What `_Outbox` reads and writes on an aiormq channel besides its published API.
BOOKKEEPING = ("confirmations", "message_id_delivery_tag", "delivery_tag", "write_queue", "max_content_size", "number")


class FramesUnsupported(Exception):
    """The channel is not one whose bookkeeping this module knows; nothing was sent."""


def frame_channel(channel: object) -> aiormq.Channel:
    """`channel`, when frames can be written on it; FramesUnsupported saying why not otherwise."""
    if not isinstance(channel, aiormq.Channel):
        raise FramesUnsupported(f"the channel is a {type(channel).__name__}, not an aiormq.Channel")
    missing = [name for name in BOOKKEEPING if not hasattr(channel, name)]
    if missing:
        raise FramesUnsupported(f"aiormq.Channel has no {', '.join(missing)}")
    if not channel.publisher_confirms:
        raise FramesUnsupported("the channel does not confirm")
    return channel


class FramePublisher:
    """The fast path: a channel of ingest's own, written to through `_Outbox`."""

    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()
        self._outbox: _Outbox | None = None

    async def publish_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        """Returns once the broker confirmed every message; raises BrokerUnavailable otherwise, and
        FramesUnsupported (before sending anything) when the channel is not one frames can be written on.

        A message the broker could not route (mandatory) or refused (nack) fails the whole request, which
        the sender then retries: some messages may then arrive twice, which consumers tolerate (at least once).
        """
        if not messages:
            return
        if not self.broker.ready:
            raise BrokerUnavailable("not connected to the broker")
        try:
            async with asyncio.timeout(self.timeout_s):
                outbox = await self._current_outbox()
                used = self._channel
                results = await outbox.publish(messages)
        except TimeoutError:
            raise BrokerUnavailable(f"no confirm from the broker within {self.timeout_s}s") from None
        except CHANNEL_ERRORS as exc:
            raise BrokerUnavailable(f"publishing failed: {exc!r}") from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            if any(is_nack(f) for f in failures) and used is not None:
                await self._drop_channel(used)
            raise BrokerUnavailable(f"broker did not take {len(failures)} of {len(results)} messages: {failures[0]}")

    async def _current_outbox(self) -> _Outbox:
        if self._channel is None or self._channel.is_closed:
            async with self._opening:
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self.broker.open_channel(publisher_confirms=True, on_return_raises=True)
        underlay = frame_channel(await self._channel.get_underlay_channel())
        # After a reconnect aio-pika restores the channel with a new aiormq channel, whose delivery tags
        # start again at 1: a new outbox for it, and the old one's writer ends.
        if self._outbox is None or self._outbox.channel is not underlay:
            if self._outbox is not None:
                self._outbox.close()
            self._outbox = _Outbox(underlay)
        return self._outbox

    async def _drop_channel(self, nacked: AbstractChannel) -> None:
        """The broker nacked on this channel: the next publish opens a new one (connection.py says why)."""
        async with self._opening:
            if self._channel is not nacked:
                return
            self._channel = None
        log.warning("the broker nacked a publish: publishing on a new channel")
        with contextlib.suppress(*CHANNEL_ERRORS):
            await nacked.close()

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*CHANNEL_ERRORS):
                await self._channel.close()


class _Outbox:
    """One aiormq channel's outgoing messages: what concurrent requests publish in the same moment leaves
    in one socket write, in the order their delivery tags were taken."""

    def __init__(self, channel: aiormq.Channel) -> None:
        self.channel = channel
        self.pending: list[bytes] = []
        self.wakeup = asyncio.Event()
        self.writer = asyncio.create_task(self._write_forever(), name="ingest-outbox")

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[Any]:
        channel = self.channel
        if channel.is_closed:
            raise BrokerUnavailable("channel closed")
        exchange = messages[0].exchange
        if any(m.exchange != exchange for m in messages):
            raise ValueError("one batch, one exchange")
        encoder = JsonPublisherFrames(channel.number, exchange, MESSAGE_TYPE, PRODUCER, channel.max_content_size)
        # Encoded before any delivery tag is taken: a message that cannot be encoded must not leave the
        # channel's count of published messages ahead of the broker's, or later confirms would match wrong ones.
        chunk = b"".join(
            encoder.message(m.routing_key, m.message_id, m.occurred_at, m.body, mandatory=True) for m in messages
        )
        loop = asyncio.get_running_loop()
        # One future from the channel's store: aiormq fails it when the channel or connection closes, so a
        # broker lost mid-request ends the wait at once. The per-message futures are plain (cheaper).
        closed = channel.create_future()
        confirmations: list[asyncio.Future[Any]] = []
        # From the first tag taken to the chunk queued nothing awaits, so no other request interleaves.
        first_tag = channel.delivery_tag + 1
        for offset, message in enumerate(messages):
            tag = first_tag + offset
            confirmation = loop.create_future()
            channel.confirmations[tag] = confirmation
            # aiormq finds the publication a Basic.Return refers to by message id.
            channel.message_id_delivery_tag[message.message_id] = tag
            confirmation.add_done_callback(partial(_forget, channel, message.message_id, tag))
            confirmations.append(confirmation)
        channel.delivery_tag = first_tag + len(messages) - 1
        self.pending.append(chunk)
        self.wakeup.set()
        try:
            confirmed = asyncio.gather(*confirmations, return_exceptions=True)
            await asyncio.wait((confirmed, closed), return_when=asyncio.FIRST_COMPLETED)
            if not confirmed.done():
                closed.result()  # raises the reason the channel closed
                raise BrokerUnavailable("channel closed before every confirm arrived")
            return confirmed.result()
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: the reason is already reported above
            closed.cancel()
            for confirmation in confirmations:
                confirmation.cancel()

    async def _write_forever(self) -> None:
        while not self.channel.is_closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            chunks, self.pending = self.pending, []
            try:
                await self.channel.write_queue.put(ChannelFrame(payload=b"".join(chunks), should_close=False))
            except CHANNEL_ERRORS as exc:
                # The waiting requests learn it from the channel's close (503); nothing else to tell.
                log.warning("could not hand messages to the AMQP writer", extra={"error": repr(exc)})
                return

    def close(self) -> None:
        self.writer.cancel()


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)
