"""Recently computed insights, served again while recent: a year of 100,000 incidents takes PostgreSQL most of a
second to sum up (every occurrence's figures are exact, so there is no shortcut), and a dashboard is opened far more
often than its figures change.

What is served says when it was computed (`Computed.at`, shown on the page and in the JSON as `as_of`), so a reader
always knows how old the figures are. Within `fresh_for` an entry is served as it is. Past that and within
`usable_for` it is still served, and one recomputation starts in the background (stale-while-revalidate, as HTTP
caches do), so no reader waits for it. Past `usable_for`, or never computed, the reader waits for the computation,
and readers of the same key at the same time wait for the same one. A failed background recomputation leaves the
entry as it was (it ages out at `usable_for`) and is logged and counted; a failed foreground one fails the request.
`fresh_for` 0 turns it off: every request computes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from prometheus_client import Counter, Histogram

log = logging.getLogger("vigil.web.insights")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

SERVED = Counter(
    "vigil_web_insights_served_total",
    "Insights answers, by how: fresh (recent figures), stale (older, recomputing), computed (the reader waited)",
    ["how"],
)
COMPUTE_SECONDS = Histogram(
    "vigil_web_insights_compute_seconds",
    "Time to compute one period's insights in PostgreSQL",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REFRESH_FAILURES = Counter(
    "vigil_web_insights_refresh_failures_total", "Background recomputations of insights that failed"
)


@dataclass(frozen=True)
class Computed(Generic[T]):
    value: T
    at: datetime  # wall clock, for readers
    monotonic: float  # for ageing, immune to clock steps


class RecentResults(Generic[K, T]):
    """At most `size` keys' latest results; the least recently used goes first."""

    def __init__(
        self,
        *,
        fresh_for: float,
        usable_for: float,
        size: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fresh_for < 0 or usable_for < fresh_for:
            raise ValueError("need 0 <= fresh_for <= usable_for")
        self.fresh_for = fresh_for
        self.usable_for = usable_for
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[K, Computed[T]] = OrderedDict()
        self._running: dict[K, asyncio.Task[Computed[T]]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[T]]) -> Computed[T]:
        if self.fresh_for == 0:
            SERVED.labels("computed").inc()
            return await self._compute(compute)
        entry = self._entries.get(key)
        age = None if entry is None else self._clock() - entry.monotonic
        if entry is not None and age is not None and age < self.usable_for:
            self._entries.move_to_end(key)
            if age < self.fresh_for:
                SERVED.labels("fresh").inc()
            else:
                SERVED.labels("stale").inc()
                if key not in self._running:
                    self._start(key, compute).add_done_callback(_log_failure)
            return entry
        SERVED.labels("computed").inc()
        task = self._running.get(key) or self._start(key, compute)
        return await asyncio.shield(task)

    def _start(self, key: K, compute: Callable[[], Awaitable[T]]) -> asyncio.Task[Computed[T]]:
        task = asyncio.create_task(self._compute(compute))
        self._running[key] = task

        def settle(done: asyncio.Task[Computed[T]]) -> None:
            self._running.pop(key, None)
            if not done.cancelled() and done.exception() is None:
                self._entries[key] = done.result()
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)

        task.add_done_callback(settle)
        return task

    async def _compute(self, compute: Callable[[], Awaitable[T]]) -> Computed[T]:
        at, started = datetime.now(UTC), self._clock()
        with COMPUTE_SECONDS.time():
            value = await compute()
        return Computed(value, at, started)

    async def close(self) -> None:
        """Cancel recomputations still running (at the web's shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[object]) -> None:
    if task.cancelled() or task.exception() is None:
        return
    REFRESH_FAILURES.inc()
    log.warning("recomputing insights failed; recent figures stay served", exc_info=task.exception())
