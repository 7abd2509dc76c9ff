"""The insights page and its JSON: incidents per day by severity, MTTA and MTTR over time, the noisiest alerts.

`GET /insights` (HTML) and `GET /api/v1/insights` (JSON) take the same period: `period` one of PERIODS (the last
7, 30, 90 or 365 UTC days, today included), or `since` and `until` (ISO 8601 dates or times, at most MAX_SPAN apart).
The figures are shared.insights' (PostgreSQL's), over the audit's incidents: announced and opened in the period.
They are served again while recent (insights_cache.py, VIGIL_WEB_INSIGHTS_FRESH_S): the page and the JSON (`as_of`)
say when they were computed. A named period is one key (its figures end when they were computed); a range is another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from markupsafe import Markup

from services.web.insights_cache import Computed, RecentResults
from services.web.listing import QueryError, parse_time
from services.web.pages import render
from services.web.presentation import duration
from services.web.trend_charts import Series, colour_of, lines, stacked_bars
from shared.db import SET_LOCAL_NO_JIT, Pool
from shared.insights.noise import Funnel, Noisy, read_funnel, read_noisiest
from shared.insights.trends import Period, Response, Trends, read_trends
from shared.problems import problem_response
from shared.readmodel.incidents import reading_snapshot
from shared.service import DB, SETTINGS

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
DEFAULT_PERIOD = "30d"
MAX_SPAN = timedelta(days=366)
KNOWN_PARAMS = frozenset({"period", "since", "until"})
# Served while recent, then recomputed in the background; past this many times the freshness, readers wait instead.
USABLE_FRESHNESSES = 10

CacheKey = str | tuple[datetime, datetime]


@dataclass(frozen=True)
class Chosen:
    """The period asked for: one of PERIODS by name, or a range (`name` None)."""

    name: str | None
    period: Period

    @property
    def key(self) -> CacheKey:
        return self.name if self.name is not None else (self.period.since, self.period.until)


def choose_period(query: Mapping[str, str], now: datetime) -> Chosen:
    """The period of a request's query; QueryError naming the parameter at fault."""
    for name in query:
        if name not in KNOWN_PARAMS:
            raise QueryError(name, f"unknown query parameter; known: {', '.join(sorted(KNOWN_PARAMS))}")
    since, until = query.get("since"), query.get("until")
    if since or until:
        if "period" in query:
            raise QueryError("period", "give either period or since and until, not both")
        if not since or not until:
            raise QueryError("until" if since else "since", "since and until go together")
        start, end = parse_time("since", since), parse_time("until", until)
        if end <= start:
            raise QueryError("until", "must be after since")
        if end - start > MAX_SPAN:
            raise QueryError("until", f"a period is at most {MAX_SPAN.days} days")
        return Chosen(None, Period.of(start, end))
    name = query.get("period", DEFAULT_PERIOD)
    if name not in PERIODS:
        raise QueryError("period", f"one of {', '.join(PERIODS)}")
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Chosen(name, Period.of(today - timedelta(days=PERIODS[name] - 1), now))


def bucket_label(trends: Trends) -> Callable[[datetime], str]:
    def label(start: datetime) -> str:
        day = start.strftime("%Y-%m-%d")
        return day if trends.period.bucket == "day" else f"week of {day}"

    return label


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def insights_json(computed: Computed[Insights]) -> dict[str, Any]:
    insights = computed.value
    trends = insights.trends
    period = trends.period
    return {
        "as_of": computed.at.isoformat(),
        "funnel": insights.funnel.as_json(),
        "noisiest": [n.as_json() for n in insights.noisiest],
        "since": period.since.isoformat(),
        "until": period.until.isoformat(),
        "bucket": period.bucket,
        "incidents": trends.incidents,
        "incidents_by_severity": trends.totals,
        "response": _response_json(trends.response),
        "buckets": [
            {
                "start": b.start.isoformat(),
                "incidents": b.incidents,
                "incidents_by_severity": b.by_severity,
                "response": _response_json(b.response),
            }
            for b in trends.buckets
        ],
    }


def _response_json(r: Response) -> dict[str, Any]:
    return {
        "incidents": r.incidents,
        "acknowledged": r.acknowledged,
        "tta_median_s": _seconds(r.tta_median_s),
        "tta_p90_s": _seconds(r.tta_p90_s),
        "resolved": r.resolved,
        "ttr_median_s": _seconds(r.ttr_median_s),
        "ttr_p90_s": _seconds(r.ttr_p90_s),
    }


def charts(trends: Trends) -> dict[str, Markup]:
    starts = [b.start for b in trends.buckets]
    label = bucket_label(trends)
    per = "day" if trends.period.bucket == "day" else "week"
    incidents = stacked_bars(
        f"Incidents per {per} by severity",
        starts,
        [Series(s, [b.by_severity[s] for b in trends.buckets], colour_of(s)) for s in trends.severities],
        label,
    )

    def response_chart(what: str, median: str, p90: str) -> Markup:
        return lines(
            f"Time to {what} per {per}: median and 90th percentile",
            starts,
            [
                Series("median", [getattr(b.response, median) for b in trends.buckets], "#2e6fdb"),
                Series("90th percentile", [getattr(b.response, p90) for b in trends.buckets], "#7a3cc4", dashed=True),
            ],
            label,
            duration,
        )

    return {
        "incidents": incidents,
        "tta": response_chart("acknowledge", "tta_median_s", "tta_p90_s"),
        "ttr": response_chart("resolve", "ttr_median_s", "ttr_p90_s"),
    }


def busiest(trends: Trends) -> tuple[str, int] | None:
    if not trends.buckets or not trends.incidents:
        return None
    top = max(trends.buckets, key=lambda b: (b.incidents, -b.start.timestamp()))
    return bucket_label(trends)(top.start), top.incidents


@dataclass(frozen=True)
class Insights:
    trends: Trends
    funnel: Funnel
    noisiest: list[Noisy]


INSIGHTS = web.AppKey("insights", RecentResults[CacheKey, Insights])


async def read(pool: Pool, period: Period) -> Insights:
    """The period's figures, read in one snapshot so the funnel and the charts count the same incidents."""
    async with pool.connection() as conn, reading_snapshot(conn) as snapshot:
        await snapshot.execute(SET_LOCAL_NO_JIT)
        trends = await read_trends(snapshot, period)
        funnel = await read_funnel(snapshot, period.since, period.until)
        noisiest = await read_noisiest(snapshot, period.since, period.until)
    return Insights(trends, funnel, noisiest)


async def recent(request: web.Request, chosen: Chosen) -> Computed[Insights]:
    """The chosen period's figures, computed now or recently (a named period: up to when they were computed)."""
    pool = request.app[DB]

    async def compute() -> Insights:
        period = chosen.period
        if chosen.name is not None:  # a named period ends when its figures are computed, not when first asked for
            period = choose_period({"period": chosen.name}, datetime.now(UTC)).period
        return await read(pool, period)

    return await request.app[INSIGHTS].get(chosen.key, compute)


async def api_insights(request: web.Request) -> web.Response:
    try:
        chosen = choose_period(request.query, datetime.now(UTC))
    except QueryError as exc:
        return problem_response(422, exc.message, field=exc.field)
    return web.json_response(insights_json(await recent(request, chosen)))


async def insights_page(request: web.Request) -> web.Response:
    try:
        chosen = choose_period(request.query, datetime.now(UTC))
    except QueryError as exc:
        return render(request, "insights.html", status=422, error=exc, periods=PERIODS, chosen=None, trends=None)
    computed = await recent(request, chosen)
    insights = computed.value
    trends = insights.trends
    top = max((n.alert.notifications for n in insights.noisiest), default=0) or 1
    return render(
        request,
        "insights.html",
        error=None,
        periods=PERIODS,
        chosen=chosen,
        as_of=computed.at,
        trends=trends,
        funnel=insights.funnel,
        noisiest=insights.noisiest,
        noisiest_top=top,
        charts=charts(trends),
        busiest=busiest(trends),
        bucket_label=bucket_label(trends),
        duration=duration,
        colour_of=colour_of,
    )


async def insights_ctx(app: web.Application) -> AsyncIterator[None]:
    fresh = app[SETTINGS].web_insights_fresh_s
    app[INSIGHTS] = RecentResults(fresh_for=fresh, usable_for=fresh * USABLE_FRESHNESSES)
    yield
    await app[INSIGHTS].close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(insights_ctx)
    app.router.add_get("/insights", insights_page)
    app.router.add_get("/api/v1/insights", api_insights)
