"""The insights page and its JSON on seeded incidents whose figures are known; and the pure period and bucket rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.web.insights import choose_period
from services.web.listing import QueryError
from services.web.trend_charts import Series, stacked_bars
from shared.config import Settings
from shared.insights.trends import Period, trends_of
from tests.seed import insert_alert, insert_incident
from tests.web.webapp import READONLY_TOKEN, Web, connect, login, serve_web, web_settings

DAY1 = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
async def web(settings: Settings, tmp_path: Path) -> Any:
    async with serve_web(web_settings(settings, tmp_path)) as running_web:
        yield running_web


async def seed(db_url: str) -> None:
    """Day 1: three critical incidents acknowledged after 60, 120 and 300 s, resolved after 600, 1200, 3000 s, and a
    maintenance incident (counted, but not in response times). Day 2: nothing. Day 3: one warning never acknowledged,
    and one incident of a severity an alert made up. Outside the period or never announced: not counted."""
    async with await connect(db_url) as conn:
        for n, (tta, ttr) in enumerate([(60, 600), (120, 1200), (300, 3000)], start=1):
            at = DAY1 + timedelta(hours=n)
            incident = await insert_incident(
                conn,
                number=n,
                state="resolved",
                opened_at=at,
                acknowledged_at=at + timedelta(seconds=tta),
                resolved_at=at + timedelta(seconds=ttr),
            )
            # Each incident: a DiskFull repeated n + 1 times, and on the first a <b>Loud</b> one repeated 10 times.
            disk = await insert_alert(conn, incident, alertname="DiskFull", host=f"db-{n}", starts_at=at)
            await conn.execute("UPDATE alerts SET notifications = %s WHERE id = %s", (n + 1, disk))
            if n == 1:
                loud = await insert_alert(conn, incident, alertname="<b>Loud</b>", starts_at=at)
                await conn.execute("UPDATE alerts SET notifications = 10 WHERE id = %s", (loud,))
        planned = await insert_incident(
            conn,
            number=4,
            state="resolved",
            opened_at=DAY1 + timedelta(hours=5),
            acknowledged_at=DAY1 + timedelta(hours=9),
            resolved_at=DAY1 + timedelta(hours=10),
        )
        await conn.execute("UPDATE incidents SET maintenance = 'kernel upgrade' WHERE id = %s", (planned,))
        await insert_incident(conn, number=5, severity="warning", opened_at=DAY1 + timedelta(days=2, hours=1))
        await insert_incident(
            conn, number=6, severity="<script>alert(1)</script>", opened_at=DAY1 + timedelta(days=2, hours=2)
        )
        await insert_incident(conn, number=7, opened_at=DAY1 - timedelta(minutes=1))
        held = await insert_incident(conn, number=8, opened_at=DAY1 + timedelta(hours=12))
        await conn.execute("UPDATE incidents SET announced = false WHERE id = %s", (held,))


PERIOD = "since=2026-11-02&until=2026-11-05"


async def test_the_json_counts_each_day_by_severity_and_gives_response_percentiles(web: Web, db_url: str) -> None:
    await seed(db_url)
    async with web.client(READONLY_TOKEN) as client:
        answer = await client.get(f"/api/v1/insights?{PERIOD}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["bucket"] == "day" and body["incidents"] == 6
    assert body["incidents_by_severity"] == {"critical": 4, "warning": 1, "<script>alert(1)</script>": 1}
    days = {b["start"][:10]: b for b in body["buckets"]}
    assert list(days) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert days["2026-11-02"]["incidents_by_severity"] == {"critical": 4, "warning": 0, "<script>alert(1)</script>": 0}
    assert days["2026-11-03"]["incidents"] == 0 and days["2026-11-03"]["response"]["tta_median_s"] is None
    # The maintenance incident is left out: 60, 120, 300 s → median 120, p90 120 + 0.8 * 180 = 264 (interpolated).
    day1 = days["2026-11-02"]["response"]
    assert day1["incidents"] == 3 and day1["acknowledged"] == 3 and day1["resolved"] == 3
    assert (day1["tta_median_s"], day1["tta_p90_s"]) == (120.0, 264.0)
    assert (day1["ttr_median_s"], day1["ttr_p90_s"]) == (1200.0, 2640.0)
    # 2 + 3 + 4 DiskFull and 10 Loud notifications, 4 occurrences, in the period's non-maintenance incidents.
    assert (body["funnel"]["notifications"], body["funnel"]["occurrences"]) == (19, 4)
    assert [(n["name"], n["notifications"], n["occurrences"]) for n in body["noisiest"]] == [
        ("<b>Loud</b>", 10, 1),
        ("DiskFull", 9, 3),
    ]
    assert all(n["suggestion"]["text"] for n in body["noisiest"])
    whole = body["response"]
    assert whole["incidents"] == 5 and whole["acknowledged"] == 3 and whole["tta_median_s"] == 120.0


async def test_the_page_shows_the_figures_charts_and_escapes_what_alerts_named(web: Web, db_url: str) -> None:
    await seed(db_url)
    async with web.client() as client:
        await login(client, "victor")
        page = await client.get(f"/insights?{PERIOD}")
    assert page.status_code == 200
    html = page.text
    assert '<dd id="incident-count">6</dd>' in html
    assert "median 2m 0s, 90th percentile 4m 24s (3 acknowledged)" in html
    assert "the busiest day was 2026-11-02 with 4" in html
    assert html.count('class="bar"') == 3  # day 1 critical, day 3 warning and the made-up severity
    assert "2026-11-02: 4 critical" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('<svg class="chart"') == 3
    assert "19 notifications → 4 alert occurrences → 5 incidents" in html
    assert html.index("&lt;b&gt;Loud&lt;/b&gt;") < html.index(">DiskFull<")


async def test_recent_figures_are_served_with_their_time_then_recomputed(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    await seed(db_url)
    async with serve_web(web_settings(settings, tmp_path, web_insights_fresh_s=0.5)) as served:
        async with served.client(READONLY_TOKEN) as client:
            first = (await client.get(f"/api/v1/insights?{PERIOD}")).json()
            async with await connect(db_url) as conn:
                await insert_incident(conn, number=9, opened_at=DAY1 + timedelta(hours=20))
            again = (await client.get(f"/api/v1/insights?{PERIOD}")).json()
            assert (again["incidents"], again["as_of"]) == (6, first["as_of"])  # recent: served as it was
            await asyncio.sleep(0.6)
            stale = (await client.get(f"/api/v1/insights?{PERIOD}")).json()
            assert (stale["incidents"], stale["as_of"]) == (6, first["as_of"])  # older: served, recomputing
            for _ in range(50):
                await asyncio.sleep(0.1)
                latest = (await client.get(f"/api/v1/insights?{PERIOD}")).json()
                if latest["incidents"] == 7:
                    break
            assert latest["incidents"] == 7 and latest["as_of"] > first["as_of"]
            assert datetime.fromisoformat(latest["as_of"]) <= datetime.now(UTC)
        async with served.client() as client:
            await login(client, "victor")
            page = await client.get(f"/insights?{PERIOD}")
    as_of = datetime.fromisoformat(latest["as_of"]).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<span id="as-of">Figures as of {as_of} UTC.</span>' in page.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=12d", "period"),
        ("since=2026-11-02", "until"),
        ("since=2026-11-05&until=2026-11-02", "until"),
        ("since=2025-01-01&until=2026-11-02", "until"),
        ("since=yesterday&until=2026-11-02", "since"),
        ("period=7d&since=2026-11-01&until=2026-11-02", "period"),
        ("colour=red", "colour"),
    ],
)
async def test_a_bad_period_is_refused_naming_the_parameter(web: Web, query: str, field: str) -> None:
    async with web.client(READONLY_TOKEN) as client:
        answer = await client.get(f"/api/v1/insights?{query}")
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    async with web.client() as client:
        await login(client, "victor")
        page = await client.get(f"/insights?{query}")
    assert page.status_code == 422 and f"{field}:" in page.text


def test_named_periods_end_now_and_start_at_midnight_utc_days_back() -> None:
    now = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    chosen = choose_period({"period": "7d"}, now)
    assert chosen.name == "7d"
    assert chosen.period == Period(datetime(2026, 11, 14, tzinfo=UTC), now, "day")
    assert len(chosen.period.starts()) == 7
    assert choose_period({}, now).name == "30d"
    year = choose_period({"period": "365d"}, now).period
    assert year.bucket == "week" and all(s.weekday() == 0 for s in year.starts())
    assert year.starts()[0] <= year.since < year.starts()[0] + timedelta(days=7)
    with pytest.raises(QueryError):
        choose_period({"period": "0d"}, now)


def test_buckets_without_rows_are_zero_and_unknown_severities_follow_the_known() -> None:
    period = Period.of(DAY1, DAY1 + timedelta(days=3))
    counted = [
        {"bucket": 3, "severity": "page", "incidents": 2},
        {"bucket": 1, "severity": "info", "incidents": 1},
        {"bucket": 3, "severity": "critical", "incidents": 5},
    ]
    trends = trends_of(period, counted, [])
    assert trends.severities == ["critical", "info", "page"]
    assert [b.incidents for b in trends.buckets] == [1, 0, 7]
    assert trends.buckets[2].by_severity == {"critical": 5, "info": 0, "page": 2}
    assert trends.response.incidents == 0 and trends.buckets[0].response.tta_median_s is None


def test_stacked_bars_scale_to_the_tallest_and_escape_series_names() -> None:
    starts = [DAY1, DAY1 + timedelta(days=1)]
    svg = stacked_bars(
        "x", starts, [Series('"><b>', [1, 3], "#000"), Series("b", [1, None], "#111")], lambda d: d.strftime("%d")
    )
    assert svg.count('class="bar"') == 3
    assert "&#34;&gt;&lt;b&gt;" in svg and '"><b>' not in svg
    # The tallest bar (3, alone on day 2) spans the whole plot height.
    assert 'height="150.0"' in svg
