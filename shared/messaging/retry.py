"""What becomes of a message its handler did not complete: retried after a delay, parked, or deferred.

A failed message is published again, with its count of failed attempts in a header, to the delay queue of its next
attempt (`topology.py`: the queue's TTL brings it back), or to its parking queue once `max_attempts` is reached or
the handler said the failure is permanent. A deferred message goes round a delay queue without counting an attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, HeadersType

from shared.messaging.topology import PARKING_EXCHANGE, RETRY_EXCHANGE, retry_queue_name

ATTEMPTS_HEADER = "x-vigil-attempts"
ERROR_HEADER = "x-vigil-error"

# Publishes with a confirm (exchange, routing key, message), raising BrokerUnavailable when the broker did not take it.
PublishMessage = Callable[[str, str, aio_pika.Message], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it is parked at once, not retried."""


def attempts_of(message: AbstractIncomingMessage) -> int:
    """Failed handlings so far, from our header; anything else there (a message from elsewhere) counts as none."""
    value = (message.headers or {}).get(ATTEMPTS_HEADER, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def copy_of(
    message: AbstractIncomingMessage, headers: HeadersType, *, body: bytes | None = None, message_id: str | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        message.body if body is None else body,
        headers={**(message.headers or {}), **headers},
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id if message_id is None else message_id,
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
class Rescheduler:
    """Sends messages round the delay queues or to parking, each publish confirmed by the broker."""

    publish: PublishMessage
    retry_delays_ms: Sequence[int]
    # How long `defer` holds a message back: consumers use it to coalesce bursts (see `defer`).
    defer_ms: int
    max_attempts: int
    pending: PendingCopies = field(default_factory=PendingCopies)

    async def retry_or_park(
        self, message: AbstractIncomingMessage, attempts: int, queue: str, error: BaseException
    ) -> str:
        """Send a message that failed after `attempts` earlier failures on to its next delay queue, or park it;
        returns the outcome."""
        attempts += 1
        permanent = isinstance(error, PermanentError)
        copy = copy_of(message, {ATTEMPTS_HEADER: attempts, ERROR_HEADER: f"{type(error).__name__}: {error}"[:1000]})
        if permanent or attempts >= self.max_attempts:
            await self.publish(PARKING_EXCHANGE, queue, copy)
            return "parked"
        delay = self.retry_delays_ms[min(attempts - 1, len(self.retry_delays_ms) - 1)]
        await self.publish(RETRY_EXCHANGE, retry_queue_name(queue, delay), copy)
        return "retried"

    async def resend_parts(
        self, message: AbstractIncomingMessage, queue: str, parts: Sequence[tuple[str, bytes]]
    ) -> str:
        """Send the parts of a message that failed back to `queue`, each a message of its own (id, body) with the
        original's properties and attempts, through the shortest delay queue; returns ("split") once the broker
        confirmed them all, after which the original may be acknowledged."""
        delay_queue = retry_queue_name(queue, self.retry_delays_ms[0])
        await asyncio.gather(
            *(
                self.publish(RETRY_EXCHANGE, delay_queue, copy_of(message, {}, body=body, message_id=message_id))
                for message_id, body in parts
            )
        )
        return "split"

    async def defer(self, message: AbstractIncomingMessage, queue: str, *, subject: str | None = None) -> bool:
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
            if self.pending.covers(queue, subject, started):
                return False
            # Counted before it is published, so that a message about the subject on another lane meanwhile is
            # dropped rather than sent round too. Should the publish fail, this message is retried and comes back
            # to read the state after whatever was dropped on its account.
            self.pending.add(queue, subject, back_at, started)
        try:
            await self.publish(RETRY_EXCHANGE, retry_queue_name(queue, self.defer_ms), copy_of(message, {}))
        except BaseException:
            if subject is not None:
                self.pending.forget(queue, subject, back_at)
            raise
        return True
