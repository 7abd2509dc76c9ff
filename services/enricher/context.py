"""Assembling the stored `IncidentContext` from the answers (or failures) of each query: pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.enricher.config import EnrichmentConfig
from services.enricher.plan import IncidentFacts, LokiQueryPlan, PromQueryPlan, SkippedExpressions
from services.enricher.security import parse_fail2ban
from services.enricher.summarise import Extremes, summarise, to_time
from services.enricher.timeline import AlertMark, build_timeline, find_bursts, per_minute
from services.enricher.upstream import Series, Stream
from services.enricher.window import EARLIEST, LATEST, Window, shift
from shared.incident_context import IncidentContext, LogLine, SecurityEvent, SeriesSummary, UpstreamStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_NS = (EARLIEST - _EPOCH) // timedelta(microseconds=1) * 1000
_MAX_NS = (LATEST - _EPOCH) // timedelta(microseconds=1) * 1000
# Hostile alerts may name many hosts and long alert names: `missing` stays a few readable lines.
MAX_SKIPPED_HOSTS = 5
MAX_SKIPPED_NAMES = 5


@dataclass(frozen=True)
class PromResult:
    plan: PromQueryPlan
    series: list[Series] | None = None
    error: str | None = None
    # The answers of the plan's extreme queries by name (`step_min`, `step_max`, `min`, `max`, `avg`; see
    # promql.ExtremeQueries); empty when none were run. `extremes_error`: why one of them has no answer.
    extremes: dict[str, list[Series]] = field(default_factory=dict)
    extremes_error: str | None = None


@dataclass(frozen=True)
class LokiResult:
    plan: LokiQueryPlan
    streams: list[Stream] | None = None
    matrix: list[Series] | None = None
    error: str | None = None


def ns_to_time(ns: int) -> datetime:
    """A log line's time; one outside datetime's range lands at its nearer end instead of raising."""
    return _EPOCH + timedelta(microseconds=min(max(ns, _MIN_NS), _MAX_NS) // 1000)


def _peak(points: Sequence[tuple[float, float]], extremes: Extremes | None) -> float:
    values = [v for _, v in points]
    if extremes is not None:
        values += [v for _, v in extremes.step_max]
        values += [extremes.max] if extremes.max is not None else []
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else -math.inf


def _identity(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """What matches a series to its *_over_time answers, which drop the metric name."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def series_extremes(result: PromResult) -> dict[tuple[tuple[str, str], ...], Extremes]:
    """Each series' answers to the extreme queries, by its labels (metric name aside)."""
    found: dict[tuple[tuple[str, str], ...], dict[str, list[tuple[float, float]]]] = {}
    for stat, answers in result.extremes.items():
        for labels, points in answers:
            found.setdefault(_identity(labels), {})[stat] = points

    def single(stats: dict[str, list[tuple[float, float]]], stat: str) -> float | None:
        return stats[stat][0][1] if stats.get(stat) else None

    def at(stats: dict[str, list[tuple[float, float]]]) -> float | None:
        return next((stats[stat][0][0] for stat in ("max", "min", "avg") if stats.get(stat)), None)

    return {
        key: Extremes(
            step_min=stats.get("step_min", []),
            step_max=stats.get("step_max", []),
            min=single(stats, "min"),
            max=single(stats, "max"),
            avg=single(stats, "avg"),
            at=at(stats),
        )
        for key, stats in found.items()
    }


def metric_summaries(
    results: Sequence[PromResult], *, alert_at: datetime, max_series: int, keep_points: int
) -> list[SeriesSummary]:
    summaries: list[SeriesSummary] = []
    for result in results:
        by_identity = series_extremes(result)
        # A series the extreme queries did not answer for (they failed, or were not run) keeps its step values.
        found = [
            (labels, points, by_identity.get(_identity(labels)) if result.extremes else None)
            for labels, points in result.series or []
            if result.plan.wants(labels)
        ]
        # Many series (an expression over every instance): the highest peaks are the ones that explain.
        kept = sorted(found, key=lambda f: _peak(f[1], f[2]), reverse=True)[:max_series]
        for labels, points, extremes in kept:
            s = summarise(points, alert_at=alert_at, keep_points=keep_points, extremes=extremes)
            summaries.append(
                SeriesSummary(
                    name=result.plan.name,
                    query=result.plan.query,
                    labels=labels,
                    unit=result.plan.unit,
                    min=s.min,
                    avg=s.avg,
                    max=s.max,
                    p95=s.p95,
                    peak=s.peak,
                    peak_at=s.peak_at,
                    baseline=s.baseline,
                    deviation_at=s.deviation_at,
                    points=s.points,
                    bands=s.bands,
                )
            )
    return summaries


def _cut(line: str, max_bytes: int) -> str:
    raw = line.encode()
    if len(raw) <= max_bytes:
        return line
    return raw[: max_bytes - 3].decode(errors="ignore") + "..."


def log_excerpt(streams: Sequence[Stream], *, limit: int, max_line_bytes: int, max_total_bytes: int) -> list[LogLine]:
    """The newest `limit` lines, each cut to `max_line_bytes`, all within `max_total_bytes`; newest first."""
    entries = sorted(
        ((ts, labels, line) for labels, values in streams for ts, line in values), key=lambda e: e[0], reverse=True
    )
    kept: list[LogLine] = []
    total = 0
    for ts, labels, line in entries[:limit]:
        text = _cut(line, max_line_bytes)
        total += len(text.encode())
        if total > max_total_bytes:
            break
        kept.append(LogLine(at=ns_to_time(ts), labels=labels, line=text))
    return kept


def security_events(streams: Sequence[Stream]) -> list[SecurityEvent]:
    events = [
        event
        for labels, values in streams
        for ts, line in values
        if (event := parse_fail2ban(line, at=ns_to_time(ts), host=labels.get("host", ""))) is not None
    ]
    return sorted(events, key=lambda e: e.at)


def _status(name: str, results: Sequence[PromResult | LokiResult]) -> UpstreamStatus:
    failed = [r for r in results if r.error is not None]
    return UpstreamStatus(
        name=name,
        ok=not failed,
        queries=len(results),
        failed=len(failed),
        error=failed[0].error if failed else None,
    )


def _missing(upstream: str, results: Sequence[PromResult | LokiResult]) -> list[str]:
    """One line per distinct reason, naming the queries it cost: `prometheus (cpu, up): cannot connect`."""
    by_reason: dict[str, list[str]] = {}
    for result in results:
        if result.error is not None:
            name = result.plan.name if isinstance(result, PromResult) else result.plan.kind
            by_reason.setdefault(result.error, []).append(name)
    return [f"{upstream} ({', '.join(names)}): {reason}" for reason, names in by_reason.items()]


def _inexact(results: Sequence[PromResult]) -> list[str]:
    """A query whose extremes are missing reports the extremes of its step values, which can miss a short spike."""
    by_reason: dict[str, list[str]] = {}
    for result in results:
        if result.error is None and result.extremes_error is not None:
            by_reason.setdefault(result.extremes_error, []).append(result.plan.name)
    return [
        f"prometheus ({', '.join(names)}): peaks and minimums only of one value per step: {reason}"
        for reason, names in by_reason.items()
    ]


def _skipped(skipped: Sequence[SkippedExpressions]) -> list[str]:
    """`prometheus (alert: HighCpu): expression from untrusted host prometheus.evil:9090 not run`, per host."""
    lines = []
    for entry in skipped[:MAX_SKIPPED_HOSTS]:
        names = [f"alert: {name}" for name in entry.alertnames[:MAX_SKIPPED_NAMES]]
        if len(entry.alertnames) > MAX_SKIPPED_NAMES:
            names.append(f"{len(entry.alertnames) - MAX_SKIPPED_NAMES} more")
        what = "expression" if len(entry.alertnames) == 1 else "expressions"
        source = f"untrusted host {entry.host}" if entry.host else "a generatorURL without an http(s) host"
        lines.append(f"prometheus ({', '.join(names)}): {what} from {source} not run")
    if len(skipped) > MAX_SKIPPED_HOSTS:
        lines.append(f"prometheus: expressions from {len(skipped) - MAX_SKIPPED_HOSTS} more untrusted hosts not run")
    return lines


def assemble(
    incident: IncidentFacts,
    window: Window,
    prom: Sequence[PromResult],
    loki: Sequence[LokiResult],
    config: EnrichmentConfig,
    *,
    generated_at: datetime,
    skipped: Sequence[SkippedExpressions] = (),
) -> IncidentContext:
    """`skipped`: alert expressions the plan left unrun; they are missing from the context, so `missing` says why."""
    metrics = metric_summaries(
        [r for r in prom if r.series is not None],
        alert_at=incident.first_alert_at,
        max_series=config.prometheus.max_series_per_query,
        keep_points=config.downsample_points,
    )
    by_kind = {r.plan.kind: r for r in loki}
    logs_result, errors_result, security_result = (by_kind.get(k) for k in ("logs", "errors", "security"))
    log_streams = (logs_result.streams or []) if logs_result else []
    logs = log_excerpt(
        log_streams,
        limit=config.loki.line_limit,
        max_line_bytes=config.loki.max_line_bytes,
        max_total_bytes=config.loki.max_total_bytes,
    )
    # Each sample of count_over_time(...[1m]) counts the minute that ends at its timestamp.
    error_samples = [
        (shift(to_time(t), -timedelta(minutes=1)), v)
        for _, points in ((errors_result.matrix or []) if errors_result else [])
        for t, v in points
        if math.isfinite(v)
    ]
    error_bursts = per_minute(error_samples)
    bursts = find_bursts(
        error_bursts,
        window_minutes=max(round(window.seconds / 60), 1),
        min_errors=config.loki.burst_min_errors,
        factor=config.loki.burst_factor,
    )
    security = security_events((security_result.streams or []) if security_result else [])
    alerts = [AlertMark(a.alertname, a.host, a.starts_at, a.ends_at, a.severity) for a in incident.alerts]
    missing = _skipped(skipped) + _missing("prometheus", prom) + _inexact(prom) + _missing("loki", loki)
    return IncidentContext(
        incident_key=incident.key,
        window_start=window.start,
        window_end=window.end,
        generated_at=generated_at,
        complete=not missing,
        missing=missing,
        upstreams=[_status("prometheus", prom), _status("loki", loki)],
        metrics=metrics,
        logs=logs,
        log_lines_total=sum(len(values) for _, values in log_streams),
        error_bursts=error_bursts[:1500],
        security_events=security[: config.loki.security_limit],
        timeline=build_timeline(
            alerts=alerts,
            metrics=metrics,
            bursts=bursts,
            security=security,
            window_start=window.start,
            window_end=window.end,
        ),
    )
