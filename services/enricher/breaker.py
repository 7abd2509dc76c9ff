"""A circuit breaker per upstream: after N consecutive failures, calls fail at once for a cooldown, then a
single trial call decides whether the upstream is back. A dead Prometheus then costs each incident
nothing but a line in `missing`, instead of every query's timeout times its retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Gauge

CIRCUIT_OPEN = Gauge("vigil_upstream_circuit_open", "1 while the circuit to an upstream is open", ["upstream"])


class CircuitOpenError(Exception):
    def __init__(self, upstream: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open after repeated failures; next try in {max(retry_in_s, 0):.0f}s")
        self.upstream = upstream


@dataclass
class CircuitBreaker:
    upstream: str
    failure_threshold: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = field(default=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown_s else "open"

    def before_call(self) -> None:
        """Raise CircuitOpenError unless a call may go out now (closed, or the one trial of half-open)."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return
        assert self.opened_at is not None
        raise CircuitOpenError(self.upstream, self.opened_at + self.cooldown_s - self.clock())

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.trial_in_flight = 0, None, False
        CIRCUIT_OPEN.labels(self.upstream).set(0)

    def failed(self) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()
            CIRCUIT_OPEN.labels(self.upstream).set(1)
        self.trial_in_flight = False

    def abandoned(self) -> None:
        """A call that ended without a verdict (cancelled, out of budget): let another trial through."""
        self.trial_in_flight = False
