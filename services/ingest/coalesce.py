"""Group commit for notifications: the ones that arrive while the broker is confirming earlier messages go out
together, as one `alerts.received` message, and each request is answered once that message is confirmed.

Alertmanager grouping by alert name and instance (or many small groups) sends one alert per webhook; one message
per webhook then cost, per alert, a publish, a routing, a delivery and an ack in RabbitMQ and a message's handling
in the correlator (about 400 µs of the ~1,400 µs of CPU each alert took on a 2-core machine). An `alerts.received`
item carries its sender, receiver and group itself, so nothing is lost by sharing a message: a consumer sees the
same alerts, and the correlator still sends a failed message round one alert per message (`split_notification`).

A notification that finds a free publishing slot goes at once, alone: merging never delays a quiet ingest. A merged
message holds no more alerts, and about no more bytes, than one request may; a request whose sender went away before
its turn, or that waited `VIGIL_PUBLISH_TIMEOUT_S` in all (answered 503), is left out: it is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Histogram

from services.ingest.translate import notification_message
from shared.messaging import BrokerUnavailable, JsonMessage

# How many messages may wait for their confirms at once. One merges the most: with one alert per webhook from 16
# senders, about seven notifications a message (a quorum queue's confirm took some 3.5 ms under that load), and
# 1,900-2,000 alerts a second end to end on a fresh 2-core stack where two in flight gave 1,800-1,840: the CPU a
# message costs in RabbitMQ and the correlator outweighed the wait.
IN_FLIGHT = 1

NOTIFICATIONS_PER_MESSAGE = Histogram(
    "vigil_ingest_notifications_per_message",
    "Notifications (webhook requests) published together in one alerts.received message",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

Publish = Callable[[list[JsonMessage]], Awaitable[None]]


@dataclass
class _Waiting:
    items: list[bytes]
    size: int
    received_at: datetime
    done: asyncio.Future[None]


class Coalescer:
    """Publishes notifications' encoded alerts (`translate.webhook_items`), merging those that wait."""

    def __init__(
        self, publish: Publish, *, max_alerts: int, max_bytes: int, timeout_s: float, in_flight: int = IN_FLIGHT
    ) -> None:
        self._publish = publish
        self.max_alerts, self.max_bytes, self.timeout_s, self.in_flight = max_alerts, max_bytes, timeout_s, in_flight
        self._waiting: deque[_Waiting] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def publish(self, items: list[bytes], received_at: datetime) -> None:
        """Returns once the broker confirmed a message holding `items`; raises what publishing that message raised,
        or BrokerUnavailable (answer 503) when that took more than `timeout_s` in all, waiting included: with the
        broker slow or gone, the notifications queued behind a message do not wait for it one timeout after another.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(items, sum(map(len, items)), received_at, done))
        self._start()
        try:
            async with asyncio.timeout(self.timeout_s):
                await done  # on the timeout, cancelled: left out if still waiting, ignored if on its way
        except TimeoutError:
            raise BrokerUnavailable(f"no confirm from the broker within {self.timeout_s}s") from None

    def _start(self) -> None:
        while len(self._running) < self.in_flight and (batch := self._take()):
            task = asyncio.create_task(self._send(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        alerts = size = 0
        while self._waiting:
            first = self._waiting[0]
            if first.done.done():  # cancelled: its sender got no answer and sends it again
                self._waiting.popleft()
                continue
            if batch and (alerts + len(first.items) > self.max_alerts or size + first.size > self.max_bytes):
                break
            batch.append(self._waiting.popleft())
            alerts += len(first.items)
            size += first.size
        return batch

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            message = notification_message([item for w in batch for item in w.items], batch[0].received_at)
            await self._publish([message])
        except asyncio.CancelledError:
            for w in batch:
                w.done.cancel()
            raise
        except Exception as exc:
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
        else:
            NOTIFICATIONS_PER_MESSAGE.observe(len(batch))
            for w in batch:
                if not w.done.done():
                    w.done.set_result(None)

    async def close(self) -> None:
        """Cancels what is still being published (aiohttp answered or dropped every request before this)."""
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
