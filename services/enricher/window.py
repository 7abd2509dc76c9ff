"""The time window an incident is enriched over, and the query step that keeps series short."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


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

    A very long incident keeps its most recent `max_span`: the end is what an on-call engineer looks at.
    """
    end = min(resolved_at + after, now) if resolved_at is not None else now
    start = first_alert_at - before
    if end - start > max_span:
        start = end - max_span
    if end <= start:
        # Clock skew between the alert's sender and us: still query something sensible around the alert.
        end = start + max(before, min_step)
    seconds = (end - start).total_seconds()
    step = max(math.ceil(seconds / max_points), math.ceil(min_step.total_seconds()), 1)
    return Window(start=start, end=end, step_s=step)
