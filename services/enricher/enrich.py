"""One enrichment: run an incident's query plan against Prometheus and Loki at once, each query bounded by the
upstream's timeout, retries, breaker and time budget, and assemble whatever came back into its context."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.enricher import promql
from services.enricher.breaker import CircuitOpenError
from services.enricher.config import EnrichmentConfig
from services.enricher.context import LokiResult, PromResult, assemble
from services.enricher.plan import IncidentFacts, LokiQueryPlan, PromQueryPlan, build_plan
from services.enricher.upstream import (
    Series,
    Upstream,
    UpstreamError,
    loki_matrix,
    loki_streams,
    prometheus_instant,
    prometheus_range,
)
from services.enricher.window import Window, incident_window
from shared.incident_context import IncidentContext

log = logging.getLogger(__name__)


@dataclass
class Upstreams:
    prometheus: Upstream
    loki: Upstream

    async def close(self) -> None:
        await self.prometheus.close()
        await self.loki.close()


def window_for(incident: IncidentFacts, config: EnrichmentConfig, now: datetime) -> Window:
    w = config.window
    return incident_window(
        first_alert_at=incident.first_alert_at,
        resolved_at=incident.resolved_at,
        now=now,
        before=w.before,
        after=w.after,
        max_span=w.max_span,
        max_points=w.max_points,
        min_step=w.min_step,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CircuitOpenError | UpstreamError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


async def _prom(
    upstream: Upstream, plan: PromQueryPlan, window: Window, deadline: float, max_series: int, resolution: timedelta
) -> PromResult:
    """The plan's values at each step and, alongside, its extremes from every sample (promql.extreme_queries)."""
    extremes = promql.extreme_queries(
        plan.query, step=timedelta(seconds=window.step_s), window=window.end - window.start, resolution=resolution
    )

    def over_steps(query: str) -> Awaitable[list[Series]]:
        return prometheus_range(
            upstream, query, window.start, window.end, window.step_s, deadline, max_series=max_series
        )

    def over_window(query: str) -> Awaitable[list[Series]]:
        return prometheus_instant(upstream, query, window.end, deadline, max_series=max_series)

    try:
        series = await over_steps(plan.query)
    except (CircuitOpenError, UpstreamError) as exc:
        return PromResult(plan, error=_reason(exc))
    # Only once the plain query answered with something: a query that fails or matches nothing costs one request,
    # and a dead Prometheus is reported by its own error, not by the breaker the extra queries would have opened.
    if extremes is None or not series:
        return PromResult(plan, series=series)
    extra = {
        "step_min": over_steps(extremes.step_min),
        "step_max": over_steps(extremes.step_max),
        "min": over_window(extremes.min),
        "max": over_window(extremes.max),
        "avg": over_window(extremes.avg),
    }
    answers = await asyncio.gather(*extra.values(), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, CircuitOpenError | UpstreamError):
            raise answer
    found = {name: a for name, a in zip(extra, answers, strict=True) if not isinstance(a, BaseException)}
    failed = [_reason(a) for a in answers if isinstance(a, BaseException)]
    return PromResult(plan, series=series, extremes=found, extremes_error=failed[0] if failed else None)


async def _loki(upstream: Upstream, plan: LokiQueryPlan, window: Window, deadline: float) -> LokiResult:
    try:
        if plan.kind == "errors":
            # Whole minutes, so each count_over_time([1m]) sample is one clock minute.
            start = window.start.replace(second=0, microsecond=0)
            end = window.end.replace(second=0, microsecond=0) + timedelta(minutes=1)
            matrix = await loki_matrix(upstream, plan.query, start, end, 60, deadline, max_series=plan.limit)
            return LokiResult(plan, matrix=matrix)
        streams = await loki_streams(upstream, plan.query, window.start, window.end, plan.limit, deadline)
        return LokiResult(plan, streams=streams)
    except (CircuitOpenError, UpstreamError) as exc:
        return LokiResult(plan, error=_reason(exc))


async def enrich(
    incident: IncidentFacts,
    config: EnrichmentConfig,
    upstreams: Upstreams,
    *,
    now: datetime,
    trusted_hosts: Set[str],
) -> IncidentContext:
    """`trusted_hosts`: `host:port` of the Prometheus servers whose alert expressions may be run."""
    window = window_for(incident, config, now)
    plan = build_plan(incident, config, trusted_hosts=trusted_hosts)
    started = time.monotonic()
    prom_deadline = started + config.prometheus.budget.total_seconds()
    loki_deadline = started + config.loki.budget.total_seconds()
    max_series = config.prometheus.max_series_per_query
    resolution = config.prometheus.resolution
    prom_tasks = [
        _prom(upstreams.prometheus, p, window, prom_deadline, max_series, resolution) for p in plan.prometheus
    ]
    loki_tasks = [_loki(upstreams.loki, p, window, loki_deadline) for p in plan.loki]
    results = await asyncio.gather(*prom_tasks, *loki_tasks)
    prom = [r for r in results if isinstance(r, PromResult)]
    loki = [r for r in results if isinstance(r, LokiResult)]
    context = assemble(incident, window, prom, loki, config, generated_at=now, skipped=plan.skipped)
    log.info(
        "incident enriched",
        extra={
            "complete": context.complete,
            "missing": context.missing,
            "series": len(context.metrics),
            "log_lines": len(context.logs),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return context
