"""End to end: Alertmanager-shaped webhooks into ingest, through RabbitMQ and the correlator, until every
alert is committed in PostgreSQL and every incident event is published. All five services run as real
processes (devstack.harness); the enricher finds no Prometheus or Loki and records partial context.

Prints one JSON line. The storm is shaped as Alertmanager's default grouping (by alert name) sends it
(devstack.alertstorm.grouped_storm): each webhook one of 20 alert names across 50 of 2,000 hosts, every label set
unique, one alert in ten a resolve, 16 senders at once. `e2e_alerts_per_s` is the alerts sent divided by the time
from the first send until the last one is committed (resolves applied) and its incident event published: once every
alert is stored and the outbox drained, the end is read from the outbox (the newest `published_at` of the events
written since the first send), the moment itself rather than when the bench's next poll noticed it. Two more shapes,
each its own figure: `one_host` (each webhook 50 alerts of one host: one incident per webhook, the easiest shape
there is) and `one_alert_per_webhook`. p50_ms/p99_ms: webhook sent → its
incident's `incident.opened` event received, at 500 alerts/s.

The enricher and reporter run at a lower CPU priority (VIGIL_BACKGROUND_NICE) and fall behind in the storm;
`background_caught_up_s` is how long after the storm's last alert was stored every incident's enrichment and reports
showed its last change that asks for them (every change but an alert resolving inside an open incident), so the work
they put off is measured, not hidden; `background_steps` counts what the events they received led to (enrich, skip,
defer...).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bench.ingest import queued
from bench.measure import progress_for
from devstack.alertstorm import WebhookSender, alert, grouped_storm, webhook
from devstack.harness import ALL_SERVICES, LocalVigil
from shared.contracts import INCIDENTS_EXCHANGE, asks_for_enrichment

progress = progress_for("pipeline")

STORM_ALERTS = 60_000
ONE_HOST_ALERTS = 60_000
SINGLE_ALERTS = 20_000
BATCH = 50
CONCURRENCY = 16
LATENCY_RATE = 500
LATENCY_SECONDS = 20
PER_WEBHOOK = 5


# When the newest incident event written since `since` was published (marked after the broker confirmed it).
LAST_PUBLISHED = "SELECT max(published_at) FROM outbox WHERE created_at >= %(since)s"

COUNTS = """SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM alerts WHERE status = 'resolved'),
                  (SELECT count(*) FROM outbox WHERE published_at IS NULL)"""


async def last_published(db_url: str, since: datetime) -> datetime:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        row = await (await conn.execute(LAST_PUBLISHED, {"since": since})).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"no incident event published since {since}")
    return row[0]


async def counts(db_url: str) -> tuple[int, int, int]:
    """Alerts stored, of them resolved, and incident events not yet published."""
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        row = await (await conn.execute(COUNTS)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@dataclass
class Shape:
    """Webhooks encoded before the clock starts (on two cores the load generator's own work would otherwise count
    against Vigil; Alertmanager runs elsewhere), and what storing them all means: rows added, rows resolved."""

    name: str
    webhooks: list[bytes]
    alerts: int
    firing: int
    resolves: int

    @classmethod
    def of(cls, name: str, webhooks: list[dict[str, object]]) -> Shape:
        alerts = [a for w in webhooks for a in w["alerts"]]  # type: ignore[attr-defined]
        resolves = sum(a["status"] == "resolved" for a in alerts)
        return cls(name, [json.dumps(w).encode() for w in webhooks], len(alerts), len(alerts) - resolves, resolves)


def grouped_shape(t0: datetime) -> Shape:
    return Shape.of("grouped", grouped_storm(STORM_ALERTS, t0=t0))


def one_host_shape(t0: datetime) -> Shape:
    """Each webhook 50 alerts of one host (300 hosts), every label set unique: one incident moved per webhook."""
    webhooks = []
    for i in range(ONE_HOST_ALERTS // BATCH):
        host = f"tp-host-{i % 300:03d}"
        webhooks.append(
            webhook(
                [
                    alert(f"BenchAlert{j}", host, starts_at=t0 + timedelta(seconds=i), labels={"batch": str(i)})
                    for j in range(BATCH)
                ]
            )
        )
    return Shape.of("one_host", webhooks)


def single_alert_shape(t0: datetime) -> Shape:
    """The grouped storm's alerts one per webhook (no resolves: a resolve alone is a webhook of its own)."""
    return Shape.of("one_alert_per_webhook", grouped_storm(SINGLE_ALERTS, t0=t0, prefix="single", per_webhook=1))


# Whether every incident's enrichment and reports are current: computed at or after the incident's last event that
# asks for them (`shared.contracts.asks_for_enrichment`; reports follow from `incident.enriched`). An alert resolving
# inside an open incident moves its revision and asks for neither, so an incident whose last change was one is current
# at an earlier revision; comparing with `incidents.revision` waited, then, for work nothing would ever do.
CAUGHT_UP = """
SELECT count(*) FILTER (WHERE e.incident_revision >= t.asked AND e.published
                          AND s.incident_revision >= t.asked AND s.enrichment_version = e.version AND s.published),
       count(*)
FROM unnest(%(ids)s::bigint[], %(asked)s::int[]) AS t(id, asked)
LEFT JOIN enrichments e ON e.incident_id = t.id
LEFT JOIN report_sources s ON s.incident_id = t.id
"""
# Incident events as the outbox holds them, read once the storm's events are all in it.
INCIDENT_EVENTS = """
SELECT i.id, o.body->>'type', o.body->'data'->>'change', (o.body->'data'->'incident'->>'revision')::int
FROM outbox o JOIN incidents i ON i.key = o.body->'data'->'incident'->>'key'
WHERE o.exchange = %(exchange)s
"""


async def asked_revisions(conn: psycopg.AsyncConnection[Any]) -> dict[int, int]:
    """Each incident's revision at its last event that asks for an enrichment."""
    asked: dict[int, int] = {}
    cur = await conn.execute(INCIDENT_EVENTS, {"exchange": INCIDENTS_EXCHANGE})
    for incident_id, event_type, change, revision in await cur.fetchall():
        if asks_for_enrichment(event_type, change):
            asked[incident_id] = max(revision, asked.get(incident_id, 0))
    return asked


async def counter_by_label(url: str, metric: str, label: str) -> dict[str, int]:
    """A service's counter from its /metrics, by one label: what its work after the storm consisted of."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return {
        sample.labels[label]: int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == metric.removesuffix("_total")
        for sample in family.samples
        if sample.name == metric
    }


async def background_catch_up(db_url: str, timeout: float = 600) -> float:
    """Seconds until every incident's enrichment and reports show its last change that asks for them, all announced
    (called once the correlator is done: every incident event is in the outbox)."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        asked = await asked_revisions(conn)
        wanted = {"ids": list(asked), "asked": list(asked.values())}
        while True:
            row = await (await conn.execute(CAUGHT_UP, wanted)).fetchone()
            assert row is not None
            if row[0] == row[1]:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"only {row[0]} of {row[1]} incidents enriched and reported after {timeout:.0f}s")
            # Half a second of resolution; polled more often, this join took PostgreSQL seconds of the catch-up.
            await asyncio.sleep(0.5)


async def throughput(vigil: LocalVigil, sender: WebhookSender, shape: Shape) -> float:
    """Alerts per second from the first send until every alert is stored, resolves applied, outbox drained."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in shape.webhooks:
        queue.put_nowait(body)
    stored_before, resolved_before, _ = await counts(vigil.database_url)

    async def worker() -> None:
        while not queue.empty():
            if not await sender.send(queue.get_nowait()):
                raise RuntimeError("ingest refused a webhook")

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    sent_s = time.perf_counter() - started
    progress(f"{shape.name}: {shape.alerts} alerts accepted by ingest in {sent_s:.1f}s; waiting for the correlator")
    # Counting the stored alerts scans the table: asked every 50 ms through the storm, it took PostgreSQL more time
    # than the correlator's statements did. Until the correlator's queue is empty only RabbitMQ is asked. Then the
    # correlator still holds what it prefetched (notifications of 50 alerts: many seconds of work), and the count,
    # some 75 ms at 60,000 alerts, is asked at most a fifth of the time (pg_stat_statements: 8 s of PostgreSQL's
    # 26 s in the storm when asked every 50 ms).
    while await queued(vigil.amqp_url):
        await asyncio.sleep(0.1)
    while True:
        asked = time.perf_counter()
        stored, resolved, pending = await counts(vigil.database_url)
        took = time.perf_counter() - asked
        stored, resolved = stored - stored_before, resolved - resolved_before
        if stored >= shape.firing and resolved >= shape.resolves and pending == 0:
            break
        if time.perf_counter() - started > 900:
            raise TimeoutError(
                f"{shape.name}: {stored} of {shape.firing} stored, {resolved} of {shape.resolves} resolved after 900s"
            )
        await asyncio.sleep(max(0.05, 4 * took))
    # The polls above are spaced to spare PostgreSQL (hundreds of milliseconds apart once the tables are large): when
    # one notices the end is not when it came. PostgreSQL's clock and ours are the machine's.
    ended_at = await last_published(vigil.database_url, started_at)
    progress(
        f"{shape.name}: all stored and published {(ended_at - started_at).total_seconds():.2f}s after the first "
        f"send, noticed after {time.perf_counter() - started:.2f}s"
    )
    return shape.alerts / (ended_at - started_at).total_seconds()


async def latency(vigil: LocalVigil, sender: WebhookSender) -> list[float]:
    """Each webhook opens a new incident (a new host); its latency ends when `incident.opened` arrives."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    connection = await aio_pika.connect(vigil.amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(INCIDENTS_EXCHANGE)
    probe = await channel.declare_queue(exclusive=True)
    await probe.bind(exchange, "incident.opened.#")

    async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received = time.perf_counter()
        for host in json.loads(message.body)["data"]["incident"]["hosts"]:
            if host in sent_at:
                latencies.append((received - sent_at.pop(host)) * 1000)
        await message.ack()

    await probe.consume(on_event)
    webhooks = LATENCY_RATE * LATENCY_SECONDS // PER_WEBHOOK
    interval = PER_WEBHOOK / LATENCY_RATE
    t0 = datetime.now(UTC)
    tasks = []
    next_at = time.perf_counter()
    for i in range(webhooks):
        host = f"lat-host-{i:05d}"
        alerts = [alert(f"LatencyAlert{j}", host, starts_at=t0, severity="critical") for j in range(PER_WEBHOOK)]
        sent_at[host] = time.perf_counter()
        tasks.append(asyncio.create_task(sender.send(webhook(alerts))))
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 60
    while sent_at and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    await connection.close()
    if sent_at:
        raise RuntimeError(f"{len(sent_at)} incidents never announced")
    return latencies


async def main() -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    shapes = [grouped_shape(t0), one_host_shape(t0), single_alert_shape(t0)]
    progress("starting PostgreSQL, RabbitMQ and the five services")
    async with LocalVigil() as vigil:
        sender = WebhookSender(f"{vigil.url('ingest')}/api/v1/webhooks/alertmanager", "harness-sender-token-01")
        rates: dict[str, float] = {}
        try:
            measured = (*ALL_SERVICES, "postgres", "rabbitmq")
            cpu_before = {name: vigil.cpu_seconds(name) for name in measured}
            own_before = time.process_time()
            storm = shapes[0]
            rates[storm.name] = await throughput(vigil, sender, storm)
            cpu_after = {name: vigil.cpu_seconds(name) for name in measured}
            cpu = {name: round(cpu_after[name] - cpu_before[name], 1) for name in measured}
            cpu["load_generator"] = round(time.process_time() - own_before, 1)
            progress(f"sustained {rates[storm.name]:.0f} alerts/s; waiting for enrichment and reports to catch up")
            caught_up = await background_catch_up(vigil.database_url)
            background_cpu = {name: round(vigil.cpu_seconds(name) - cpu_after[name], 1) for name in measured}
            steps = {
                "enricher": await counter_by_label(vigil.url("enricher"), "vigil_enrichment_steps_total", "step"),
                "reporter": await counter_by_label(vigil.url("reporter"), "vigil_report_versions_total", "outcome"),
            }
            progress(f"caught up in {caught_up:.1f}s")
            for shape in shapes[1:]:
                rates[shape.name] = await throughput(vigil, sender, shape)
                progress(f"{shape.name}: {rates[shape.name]:.0f} alerts/s; letting the background catch up")
                await background_catch_up(vigil.database_url)
            progress(f"now latency at {LATENCY_RATE} alerts/s")
            latencies = sorted(await latency(vigil, sender))
        finally:
            await sender.aclose()
        rss = {name: vigil.rss_peak_mb(name) for name in ALL_SERVICES}
    q = statistics.quantiles(latencies, n=100)
    print(
        json.dumps(
            {
                "bench": "e2e",
                "e2e_alerts_per_s": round(rates["grouped"]),
                "storm": {
                    "alerts": storm.alerts,
                    "resolves": storm.resolves,
                    "hosts": 2_000,
                    "alertnames": 20,
                    "webhook_size": BATCH,
                    "senders": CONCURRENCY,
                },
                "one_host_alerts_per_s": round(rates["one_host"]),
                "one_alert_per_webhook_alerts_per_s": round(rates["one_alert_per_webhook"]),
                "target_e2e_alerts_per_s": 3_000,
                "target_one_alert_per_webhook_alerts_per_s": 2_000,
                "p50_ms": round(q[49], 1),
                "p99_ms": round(q[98], 1),
                "target_p99_ms": 250,
                "latency_rate_alerts_per_s": LATENCY_RATE,
                "latency_samples": len(latencies),
                "rss_peak_mb": rss,
                "throughput_cpu_s": cpu,
                "background_caught_up_s": round(caught_up, 1),
                "catch_up_cpu_s": background_cpu,
                "background_steps": steps,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
