"""Linking: one timeline that sets alert starts, metric peaks and deviations, log bursts and bans side by side,
so a reader sees at a glance that the error burst came a minute before the CPU peak and the alert."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.incident_context import ContextEvent, LogBurst, SecurityEvent, SeriesSummary

MAX_EVENTS = 300
MAX_SECURITY_EVENTS = 50
_KIND_ORDER = {"metric_deviation": 0, "log_burst": 1, "security": 2, "alert_start": 3, "metric_peak": 4, "alert_end": 5}


@dataclass(frozen=True)
class AlertMark:
    alertname: str
    host: str | None
    starts_at: datetime
    ends_at: datetime | None
    severity: str = ""


@dataclass(frozen=True)
class Burst:
    start: datetime
    minutes: int
    errors: int
    peak: int
    peak_minute: datetime


def per_minute(samples: Sequence[tuple[datetime, float]]) -> list[LogBurst]:
    """Error counts from all series, summed per minute; minutes without errors are left out."""
    totals: dict[datetime, int] = {}
    for at, count in samples:
        minute = at.replace(second=0, microsecond=0)
        totals[minute] = totals.get(minute, 0) + round(count)
    return [LogBurst(minute=m, errors=n) for m, n in sorted(totals.items()) if n > 0]


def find_bursts(counts: Sequence[LogBurst], *, window_minutes: int, min_errors: int, factor: float) -> list[Burst]:
    """Runs of consecutive minutes with at least `min_errors` and `factor` times the window's median
    (minutes without errors count as zero)."""
    if not counts:
        return []
    values = [c.errors for c in counts] + [0] * max(window_minutes - len(counts), 0)
    threshold = max(min_errors, factor * statistics.median(values))
    bursts: list[Burst] = []
    run: list[LogBurst] = []
    for count in [*counts, None]:
        adjacent = count is not None and run and count.minute - run[-1].minute == timedelta(minutes=1)
        if count is not None and count.errors >= threshold and (not run or adjacent):
            run.append(count)
            continue
        if run:
            top = max(run, key=lambda c: c.errors)
            bursts.append(Burst(run[0].minute, len(run), sum(c.errors for c in run), top.errors, top.minute))
        run = [count] if count is not None and count.errors >= threshold else []
    return bursts


def _label_hint(labels: dict[str, str]) -> str:
    for key in ("instance", "host", "job"):
        if labels.get(key):
            return f" on {labels[key]}"
    return ""


def build_timeline(
    *,
    alerts: Sequence[AlertMark],
    metrics: Sequence[SeriesSummary],
    bursts: Sequence[Burst],
    security: Sequence[SecurityEvent],
    window_start: datetime,
    window_end: datetime,
) -> list[ContextEvent]:
    events: list[ContextEvent] = []
    for alert in alerts:
        where = f" on {alert.host}" if alert.host else ""
        events.append(
            ContextEvent(
                at=alert.starts_at,
                kind="alert_start",
                title=f"{alert.alertname}{where} started firing",
                detail={"alertname": alert.alertname, "host": alert.host, "severity": alert.severity},
            )
        )
        if alert.ends_at is not None and alert.ends_at <= window_end:
            events.append(
                ContextEvent(
                    at=alert.ends_at,
                    kind="alert_end",
                    title=f"{alert.alertname}{where} resolved",
                    detail={"alertname": alert.alertname, "host": alert.host},
                )
            )
    for series in metrics:
        hint = _label_hint(series.labels)
        unit = f" {series.unit}" if series.unit else ""
        if series.deviation_at is not None:
            events.append(
                ContextEvent(
                    at=series.deviation_at,
                    kind="metric_deviation",
                    title=f"{series.name}{hint} left its baseline of {series.baseline:.4g}{unit}",
                    detail={"series": series.name, "baseline": series.baseline, "query": series.query},
                )
            )
        # A peak is news when the series moved, or when it is the alert's own expression.
        if series.peak_at is not None and (series.deviation_at is not None or series.name.startswith("alert:")):
            events.append(
                ContextEvent(
                    at=series.peak_at,
                    kind="metric_peak",
                    title=f"{series.name}{hint} peaked at {series.peak:.4g}{unit}",
                    detail={"series": series.name, "value": series.peak, "query": series.query},
                )
            )
    for burst in bursts:
        events.append(
            ContextEvent(
                at=burst.start,
                kind="log_burst",
                title=f"{burst.errors} error log lines in {burst.minutes} min (peak {burst.peak}/min)",
                detail={"errors": burst.errors, "minutes": burst.minutes, "peak": burst.peak},
            )
        )
    for event in security[:MAX_SECURITY_EVENTS]:
        events.append(
            ContextEvent(
                at=event.at,
                kind="security",
                title=f"Fail2Ban {event.action} {event.ip}" + (f" [{event.jail}]" if event.jail else ""),
                detail={"action": event.action, "ip": event.ip, "jail": event.jail, "host": event.host},
            )
        )
    inside = [e for e in events if window_start <= e.at <= window_end or e.kind.startswith("alert_")]
    inside.sort(key=lambda e: (e.at, _KIND_ORDER[e.kind]))
    return inside[:MAX_EVENTS]
