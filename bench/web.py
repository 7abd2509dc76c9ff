"""Web dashboard and API at size, against a throwaway PostgreSQL holding 100,000 incidents.

Prints one JSON line per figure:
- web_list_100k: `GET /api/v1/incidents` with a mix of filters (none, state, severity, host, text, label
  matcher, time range, a deep cursor page), sequential requests; p50/p95/p99 overall and p95 per kind
  (target: p95 under 100 ms).
- web_list_page_100k: the HTML list page, unfiltered and filtered.
- web_incident_10k: the incident page (HTML, with 6 charts, the alert summary and the first 500 alerts) of an
  incident with 10,000 alerts (target: p95 under 300 ms); the same page with all 10,000 alerts listed
  (?alerts=all), and the incident's full JSON.
- web_insights_100k: the insights page of the whole year (all 100,000 incidents) and of a month, and the year's
  JSON (target: p95 under 300 ms), as readers get them (recent figures served again, VIGIL_WEB_INSIGHTS_FRESH_S), and
  computed for each request (`computed_*`: what the first reader of a period waits).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from bench.measure import migrated_postgres, percentile_rounded_index, progress_for
from devstack.procs import free_port
from services.web.app import build_app
from shared.config import Settings

progress = progress_for("web")

INCIDENTS = 100_000
BIG_ALERTS = 10_000
LIST_ROUNDS = 40
PAGE_RUNS = 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = secrets.token_urlsafe(16)
STATES = ("resolved",) * 8 + ("open", "acknowledged")
SEVERITIES = ("critical", "error", "warning", "warning", "info")
ALERTNAMES = ("HostDown", "DiskFull", "HighCPU", "Http5xx", "MemoryPressure", "ProbeFailed")


def incident_rows() -> Iterator[tuple[Any, ...]]:
    for n in range(1, INCIDENTS + 1):
        opened = T0 + timedelta(minutes=5 * n)
        state = STATES[n % len(STATES)]
        host = f"host-{n % 2000:04d}"
        alertname = ALERTNAMES[n % len(ALERTNAMES)]
        yield (
            f"INC-{n:06d}", "default", f"default:{n}", Jsonb({"host": host}), f"{alertname} on {host}", state,
            True, SEVERITIES[n % len(SEVERITIES)], [host], 1, 1 if state != "resolved" else 0,
            opened, opened, opened,
            opened + timedelta(minutes=3) if state != "open" else None,
            opened + timedelta(minutes=40) if state == "resolved" else None,
        )  # fmt: skip


def alert_rows(ids: dict[int, int]) -> Iterator[tuple[Any, ...]]:
    for n, incident_id in ids.items():
        host = f"host-{n % 2000:04d}"
        alertname = ALERTNAMES[n % len(ALERTNAMES)]
        starts = T0 + timedelta(minutes=5 * n)
        labels = {"alertname": alertname, "instance": f"{host}:9100", "job": ("node", "nginx", "db")[n % 3],
                  "env": ("prod", "stage")[n % 2]}  # fmt: skip
        yield (incident_id, f"{n:016x}", starts, "firing", alertname, "warning", host, Jsonb(labels),
               Jsonb({"summary": f"{alertname} on {host}"}), starts, starts)  # fmt: skip


def big_alert_rows(incident_id: int, opened: datetime) -> Iterator[tuple[Any, ...]]:
    for i in range(BIG_ALERTS):
        host = f"storm-{i % 500:03d}"
        alertname = ALERTNAMES[i % len(ALERTNAMES)]
        starts = opened + timedelta(seconds=i)
        labels = {"alertname": alertname, "instance": f"{host}:9100", "job": "node", "team": "ops"}
        annotations = {"summary": f"{alertname} on {host} <value {i}>", "runbook_url": "https://runbooks.example/x"}
        yield (incident_id, f"big{i:013x}", starts, ("firing", "resolved")[i % 2], alertname, "critical", host,
               Jsonb(labels), Jsonb(annotations), starts, starts)  # fmt: skip


def big_context(opened: datetime) -> dict[str, Any]:
    points = [[(opened + timedelta(minutes=m)).isoformat(), float(m % 37)] for m in range(-60, 180)]
    return {
        "incident_key": "INC-900000",
        "window_start": (opened - timedelta(hours=1)).isoformat(),
        "window_end": (opened + timedelta(hours=3)).isoformat(),
        "generated_at": (opened + timedelta(hours=3)).isoformat(),
        "complete": True,
        "metrics": [
            {"name": f"series-{k}", "query": "up", "labels": {}, "unit": "%", "points": points} for k in range(6)
        ],
        "logs": [{"at": opened.isoformat(), "labels": {"job": "app"}, "line": f"error {k} <x>"} for k in range(200)],
        "log_lines_total": 50_000,
        "security_events": [{"at": opened.isoformat(), "action": "ban", "ip": f"203.0.113.{k}"} for k in range(100)],
    }


def load(url: str) -> None:
    alert_cols = "(incident_id, fingerprint, starts_at, status, alertname, severity, host, labels, annotations, " \
        "first_seen_at, last_seen_at)"  # fmt: skip
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            started = time.monotonic()
            with cur.copy(
                "COPY incidents (key, rule, group_key, group_labels, title, state, announced, severity, hosts, "
                "alert_count, firing_count, opened_at, first_alert_at, last_alert_at, acknowledged_at, resolved_at) "
                "FROM STDIN"
            ) as copy:
                for row in incident_rows():
                    copy.write_row(row)
            ids = {int(key[4:]): i for i, key in cur.execute("SELECT id, key FROM incidents").fetchall()}
            with cur.copy(f"COPY alerts {alert_cols} FROM STDIN") as copy:
                for row in alert_rows(ids):
                    copy.write_row(row)
            opened = T0 + timedelta(minutes=5 * INCIDENTS + 1)
            big_id = cur.execute(
                "INSERT INTO incidents (key, rule, group_key, title, state, announced, severity, hosts, alert_count, "
                "firing_count, opened_at, first_alert_at, last_alert_at) VALUES ('INC-900000', 'default', 'storm', "
                "'Storm of 10,000 alerts', 'open', true, 'critical', %s, %s, %s, %s, %s, %s) RETURNING id",
                ([f"storm-{i:03d}" for i in range(50)], BIG_ALERTS, BIG_ALERTS // 2, opened, opened, opened),
            ).fetchone()[0]  # type: ignore[index]
            with cur.copy(f"COPY alerts {alert_cols} FROM STDIN") as copy:
                for row in big_alert_rows(big_id, opened):
                    copy.write_row(row)
            with cur.copy("COPY incident_timeline (incident_id, at, kind, actor, detail) FROM STDIN") as copy:
                for i in range(BIG_ALERTS):
                    detail = {"alertname": ALERTNAMES[i % 6], "host": f"storm-{i % 500:03d}"}
                    copy.write_row((big_id, opened + timedelta(seconds=i), "alert_added", "correlator", Jsonb(detail)))
            cur.execute(
                "INSERT INTO enrichments (incident_id, incident_revision, complete, context) VALUES (%s, 1, true, %s)",
                (big_id, Jsonb(big_context(opened))),
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        progress(f"loaded {INCIDENTS} incidents, {INCIDENTS + BIG_ALERTS} alerts in {time.monotonic() - started:.1f}s")


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    answer = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return elapsed, answer


async def measure(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        # A cursor deep into the history, as a person paging far back would hold.
        deep = (await client.get("/api/v1/incidents?limit=500")).json()
        for _ in range(20):
            deep = (await client.get(f"/api/v1/incidents?limit=500&cursor={deep['next_cursor']}")).json()
        queries = {
            "newest": "/api/v1/incidents",
            "state_open": "/api/v1/incidents?state=open",
            "severity": "/api/v1/incidents?severity=critical,error",
            "host": "/api/v1/incidents?host=host-0042",
            "text": "/api/v1/incidents?q=memorypressure%20on%20host-01",
            "matcher": "/api/v1/incidents?matcher=job%3D%22db%22&matcher=env%3D~%22prod%22",
            "alertname_open": "/api/v1/incidents?alertname=DiskFull&state=open,acknowledged",
            "time_range": "/api/v1/incidents?since=2026-03-01T00:00:00Z&until=2026-03-08T00:00:00Z",
            "deep_cursor": f"/api/v1/incidents?cursor={deep['next_cursor']}",
        }
        for path in queries.values():  # warm the pool and PostgreSQL's caches
            await timed(client, path)
        times: dict[str, list[float]] = {name: [] for name in queries}
        for _ in range(LIST_ROUNDS):
            for name, path in queries.items():
                times[name].append((await timed(client, path))[0])
        every = [t for ts in times.values() for t in ts]
        results: list[dict[str, Any]] = [
            {
                "bench": "web_list_100k",
                "incidents": INCIDENTS,
                "requests": len(every),
                "p50_ms": round(statistics.median(every), 1),
                "p95_ms": round(percentile_rounded_index(every, 0.95), 1),
                "p99_ms": round(percentile_rounded_index(every, 0.99), 1),
                "target_p95_ms": 100,
                "p95_ms_by_query": {name: round(percentile_rounded_index(ts, 0.95), 1) for name, ts in times.items()},
            }
        ]
        page_times: dict[str, list[float]] = {"unfiltered": [], "filtered": []}
        for _ in range(PAGE_RUNS):
            page_times["unfiltered"].append((await timed(client, "/"))[0])
            page_times["filtered"].append((await timed(client, "/?state=open&severity=critical&q=host"))[0])
        results.append(
            {
                "bench": "web_list_page_100k",
                "p95_ms_by_page": {
                    name: round(percentile_rounded_index(ts, 0.95), 1) for name, ts in page_times.items()
                },
            }
        )
        html, full, api = [], [], []
        sizes = {}
        for _ in range(PAGE_RUNS):
            elapsed, page = await timed(client, "/incidents/INC-900000")
            html.append(elapsed)
            elapsed, everything = await timed(client, "/incidents/INC-900000?alerts=all")
            full.append(elapsed)
            api.append((await timed(client, "/api/v1/incidents/INC-900000"))[0])
        sizes = {"page_bytes": len(page.content), "page_all_bytes": len(everything.content)}
        if page.text.count('class="labels"') != 500 or everything.text.count('class="labels"') != BIG_ALERTS:
            raise RuntimeError("the incident page does not list the alerts it should")
        results.append(
            {
                "bench": "web_incident_10k",
                "alerts": BIG_ALERTS,
                "page_p50_ms": round(statistics.median(html), 1),
                "page_p95_ms": round(percentile_rounded_index(html, 0.95), 1),
                "page_all_alerts_p50_ms": round(statistics.median(full), 1),
                "page_all_alerts_p95_ms": round(percentile_rounded_index(full, 0.95), 1),
                "json_p50_ms": round(statistics.median(api), 1),
                "json_p95_ms": round(percentile_rounded_index(api, 0.95), 1),
                **sizes,
                "target_page_p95_ms": 300,
            }
        )
        insight_pages = {
            # The whole year of the data set (100,000 incidents), and a month of it.
            "year_page": "/insights?since=2026-01-01&until=2026-12-31",
            "month_page": "/insights?since=2026-06-01&until=2026-07-01",
            "year_json": "/api/v1/insights?since=2026-01-01&until=2026-12-31",
        }
        insight_times: dict[str, list[float]] = {name: [] for name in insight_pages}
        for path in insight_pages.values():
            await timed(client, path)
        for _ in range(PAGE_RUNS):
            for name, path in insight_pages.items():
                insight_times[name].append((await timed(client, path))[0])
        # The same pages computed for every request (a period never asked for before: the since moves by seconds,
        # which changes no figure here), as the first reader after a quiet spell would wait for them.
        computed_times: dict[str, list[float]] = {name: [] for name in insight_pages}
        for run in range(PAGE_RUNS):
            for page, (name, path) in enumerate(insight_pages.items()):
                moved = f"T00:{page:02d}:{run:02d}Z"
                fresh_key = path.replace("since=2026-01-01", f"since=2026-01-01{moved}")
                fresh_key = fresh_key.replace("since=2026-06-01", f"since=2026-06-01{moved}")
                computed_times[name].append((await timed(client, fresh_key))[0])
        every = [t for ts in insight_times.values() for t in ts]
        results.append(
            {
                "bench": "web_insights_100k",
                "incidents": INCIDENTS,
                "p50_ms": round(statistics.median(every), 1),
                "p95_ms": round(percentile_rounded_index(every, 0.95), 1),
                "p95_ms_by_page": {
                    name: round(percentile_rounded_index(ts, 0.95), 1) for name, ts in insight_times.items()
                },
                "computed_p50_ms_by_page": {
                    name: round(statistics.median(ts), 1) for name, ts in computed_times.items()
                },
                "computed_p95_ms_by_page": {
                    name: round(percentile_rounded_index(ts, 0.95), 1) for name, ts in computed_times.items()
                },
                "target_p95_ms": 300,
            }
        )
    return results


async def serve_and_measure(settings: Settings) -> list[dict[str, Any]]:
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.web_port)
    await site.start()
    try:
        return await measure(f"http://127.0.0.1:{settings.web_port}")
    finally:
        await runner.cleanup()


def main() -> int:
    # No RabbitMQ: the list and the incident page only read PostgreSQL; the broker's reconnect chatter is muted.
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("aiormq", "aio_pika", "shared.messaging"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    with migrated_postgres("vigil-bench-web-", progress) as url:
        load(url)
        settings = Settings(
            database_url=url,
            # No broker runs here: the benchmark reads pages. Vigil refuses example passwords, so not guest:guest.
            amqp_url=f"amqp://bench:{secrets.token_hex(12)}@127.0.0.1:{free_port()}/",
            web_port=free_port(),
            api_token=TOKEN,
            database_pool_size=4,
        )
        for result in asyncio.run(serve_and_measure(settings)):
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
