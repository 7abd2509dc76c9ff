"""The fast way to publish a batch: every message of it goes to RabbitMQ in one socket write on a channel of the
publisher's own, and the caller learns, message by message, which the broker confirmed.

Why not aio-pika's publish: it encodes with pamqp and writes and drains the socket once per message; at webhooks of
50 alerts that was most of ingest's CPU (bench/ingest.py), and a sixth of the correlator's in a storm. Here the
frames are encoded by `amqp_frames` and handed to aiormq's writer as one chunk, and the confirm bookkeeping is
aiormq's own (`Channel.basic_publish` does the same per message: take the next delivery tag, register a future under
it and under the message id for returns). Batches published at the same moment share a write too. The channel is
opened from the Broker's robust connection, so aio-pika restores it after a reconnect.

That bookkeeping is aiormq's, not a published API: should the channel not have it (another aiormq than the one
pinned in pyproject.toml), `FramesUnsupported` is raised before anything is sent, and `batch_publisher.py` falls
back to aio-pika.
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
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq.abc import ChannelFrame

from shared.messaging.amqp_frames import JsonFrames, JsonMessage
from shared.messaging.broker import Broker
from shared.messaging.connection import CHANNEL_ERRORS, BrokerUnavailable, is_nack

log = logging.getLogger(__name__)

# What `_ChannelWriter` reads and writes on an aiormq channel besides its published API.
BOOKKEEPING = ("confirmations", "message_id_delivery_tag", "delivery_tag", "write_queue", "max_content_size", "number")

# One message's outcome: None once the broker confirmed it, else why not.
Outcome = BaseException | None


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
    """Frames on a channel of the publisher's own, written through `_ChannelWriter`.

    `name` names the writer task; `aio_pika_defaults` is `JsonFrames`'s.
    """

    def __init__(self, broker: Broker, timeout_s: float, *, name: str, aio_pika_defaults: bool = False) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.name = name
        self.aio_pika_defaults = aio_pika_defaults
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()
        self._writer: _ChannelWriter | None = None

    async def publish(self, messages: Sequence[JsonMessage]) -> list[Outcome]:
        """One outcome per message, in order, once each is confirmed or failed: None when the broker confirmed it,
        BrokerUnavailable when it was refused (nack), returned as unroutable (mandatory), not confirmed within
        `timeout_s` or lost with the channel, ValueError when it cannot be encoded (it is then not sent).

        Raises FramesUnsupported, before sending anything, when the channel is not one frames can be written on.
        """
        if not messages:
            return []
        if not self.broker.ready:
            return _every(messages, BrokerUnavailable("not connected to the broker"))
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                writer = await self._current_writer()
                used = self._channel
        except TimeoutError:
            return _every(messages, BrokerUnavailable(f"no channel from the broker within {self.timeout_s}s"))
        except CHANNEL_ERRORS as exc:
            return _every(messages, _unavailable(exc))
        try:
            raw = await writer.publish(messages, deadline)
        except CHANNEL_ERRORS as exc:  # a channel closing under it, before anything was written
            return _every(messages, _unavailable(exc))
        if used is not None and any(r is not None and is_nack(r) for r in raw):
            await self._drop_channel(used)
        return [r if r is None or isinstance(r, BrokerUnavailable | ValueError) else _unavailable(r) for r in raw]

    async def _current_writer(self) -> _ChannelWriter:
        if self._channel is None or self._channel.is_closed:
            async with self._opening:
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self.broker.open_channel(publisher_confirms=True, on_return_raises=True)
        underlay = frame_channel(await self._channel.get_underlay_channel())
        # After a reconnect aio-pika restores the channel with a new aiormq channel, whose delivery tags
        # start again at 1: a new writer for it, and the old one ends.
        if self._writer is None or self._writer.channel is not underlay:
            if self._writer is not None:
                self._writer.close()
            self._writer = _ChannelWriter(underlay, self.name, self.timeout_s, self.aio_pika_defaults)
        return self._writer

    async def _drop_channel(self, nacked: AbstractChannel) -> None:
        """The broker nacked on this channel: the next publish opens a new one (connection.py says why)."""
        async with self._opening:
            if self._channel is not nacked:
                return
            self._channel = None
        log.warning("the broker nacked a publish: publishing on a new channel", extra={"publisher": self.name})
        with contextlib.suppress(*CHANNEL_ERRORS):
            await nacked.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(*CHANNEL_ERRORS):
                await self._channel.close()


class _ChannelWriter:
    """One aiormq channel's outgoing messages: what concurrent batches publish in the same moment leaves in one
    socket write, in the order their delivery tags were taken."""

    def __init__(self, channel: aiormq.Channel, name: str, timeout_s: float, aio_pika_defaults: bool) -> None:
        self.channel = channel
        self.timeout_s = timeout_s
        self.aio_pika_defaults = aio_pika_defaults
        self.pending: list[bytes] = []
        self.wakeup = asyncio.Event()
        self.writer = asyncio.create_task(self._write_forever(), name=f"{name}-frames")

    async def publish(self, messages: Sequence[JsonMessage], deadline: float) -> list[Outcome]:
        """The raw outcomes: None, aiormq's exception for a message, or BrokerUnavailable for one never confirmed."""
        channel = self.channel
        if channel.is_closed:
            return _every(messages, BrokerUnavailable("channel closed"))
        encoder = JsonFrames(channel.number, channel.max_content_size, aio_pika_defaults=self.aio_pika_defaults)
        outcomes: list[Outcome] = [None] * len(messages)
        # Encoded before any delivery tag is taken: a message that cannot be encoded must not leave the
        # channel's count of published messages ahead of the broker's, or later confirms would match wrong ones.
        frames: list[bytes] = []
        sent: list[int] = []
        for index, message in enumerate(messages):
            try:
                frames.append(encoder.encode(message))
            except ValueError as exc:
                outcomes[index] = exc
            else:
                sent.append(index)
        if not sent:
            return outcomes
        loop = asyncio.get_running_loop()
        # One future from the channel's store: aiormq fails it when the channel or connection closes, so a
        # broker lost mid-batch ends the wait at once. The per-message futures are plain (cheaper).
        closed = channel.create_future()
        confirmations: list[asyncio.Future[Any]] = []
        # From the first tag taken to the chunk queued nothing awaits, so no other batch interleaves.
        first_tag = channel.delivery_tag + 1
        for offset, index in enumerate(sent):
            tag = first_tag + offset
            message_id = messages[index].message_id
            confirmation = loop.create_future()
            channel.confirmations[tag] = confirmation
            # aiormq finds the publication a Basic.Return refers to by message id.
            channel.message_id_delivery_tag[message_id] = tag
            confirmation.add_done_callback(partial(_forget, channel, message_id, tag))
            confirmations.append(confirmation)
        channel.delivery_tag = first_tag + len(sent) - 1
        self.pending.append(b"".join(frames))
        self.wakeup.set()
        confirmed = asyncio.gather(*confirmations, return_exceptions=True)
        try:
            await asyncio.wait(
                (confirmed, closed), timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            lost = _lost(closed, self.timeout_s)
            for index, confirmation in zip(sent, confirmations, strict=True):
                if confirmation.done() and not confirmation.cancelled():
                    outcomes[index] = confirmation.exception()
                else:
                    outcomes[index] = lost
            return outcomes
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: the reason is already in the outcomes
            closed.cancel()
            # A confirm arriving later finds its future done and is ignored (aiormq logs it at debug level).
            confirmed.cancel()

    async def _write_forever(self) -> None:
        while not self.channel.is_closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            chunks, self.pending = self.pending, []
            try:
                await self.channel.write_queue.put(ChannelFrame(payload=b"".join(chunks), should_close=False))
            except CHANNEL_ERRORS as exc:
                # The waiting publishers learn it from the channel's close; nothing else to tell.
                log.warning("could not hand messages to the AMQP writer", extra={"error": repr(exc)})
                return

    def close(self) -> None:
        self.writer.cancel()


def _lost(closed: asyncio.Future[Any], timeout_s: float) -> BrokerUnavailable:
    """Why the messages still unconfirmed will not be: the channel closed, or the time ran out."""
    if not closed.done():
        return BrokerUnavailable(f"no confirm from the broker within {timeout_s}s")
    reason = None if closed.cancelled() else closed.exception()
    lost = BrokerUnavailable(f"channel closed before the broker confirmed: {reason!r}")
    lost.__cause__ = reason
    return lost


def _unavailable(exc: BaseException) -> BrokerUnavailable:
    """A message the broker did not take, in the terms `BrokerConnection.publish_message` uses for it."""
    if isinstance(exc, DeliveryError | PublishError):
        unavailable = BrokerUnavailable(f"broker refused the message: {exc}")
    else:
        unavailable = BrokerUnavailable(f"publishing failed: {exc!r}")
    unavailable.__cause__ = exc
    return unavailable


def _every(messages: Sequence[JsonMessage], outcome: BaseException) -> list[Outcome]:
    return [outcome] * len(messages)


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)
