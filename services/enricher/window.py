"""The time window an incident is enriched over, and the query step that keeps series short.

Alert timestamps are whatever the sender wrote: a year-1 start or a year-9999 resolution must still give a window,
not an OverflowError that fails (and at last parks) the incident's message. Every input is clamped between the Unix
epoch and `now` before any arithmetic, and what arithmetic remains saturates at the ends of datetime's range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def shift(at: datetime, delta: timedelta) -> datetime:
    """`at + delta`, or the end of datetime's range it would have passed."""
    try:
        return at + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST


def clamp(at: datetime, earliest: datetime, latest: datetime) -> datetime:
    return min(max(at, earliest), latest)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    step_s: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def incident_window(
    *,
    first_alert_at: datetime,
    resolved_at: datetime | None,
    now: datetime,
    before: timedelta,
    after: timedelta,
    max_span: timedelta,
    max_points: int,
    min_step: timedelta,
) -> Window:
    """From `before` ahead of the first alert to the resolution (plus `after`) or now, whichever is earlier.

    A very long incident keeps its most recent `max_span`: the end is what an on-call engineer looks at. A first
    alert from the future (the sender's clock) counts as now, a resolution before the first alert as that alert.
    """
    # Neither Prometheus nor Loki holds anything from before the epoch, and nothing from after now yet.
    first = clamp(first_alert_at, EPOCH, now)
    end = now if resolved_at is None else min(shift(clamp(resolved_at, first, now), after), now)
    # An earlier first alert would be cut by max_span below anyway.
    first = max(first, shift(shift(end, -max_span), -before))
    start = shift(first, -before)
    if end - start > max_span:
        start = shift(end, -max_span)
    if end <= start:
        # No `before` and resolved at once: still query something around the alert.
        start = shift(end, -max(before, min_step))
    seconds = (end - start).total_seconds()
    step = max(math.ceil(seconds / max_points), math.ceil(min_step.total_seconds()), 1)
    return Window(start=start, end=end, step_s=step)
