"""End to end: Alertmanager-shaped webhooks into ingest, through RabbitMQ and the correlator, until every
alert is committed in PostgreSQL and every incident event is published. All five services run as real
processes (devstack.harness); the enricher finds no Prometheus or Loki and records partial context.

Prints one JSON line: e2e_alerts_per_s (sustained, webhooks of 50), p50_ms/p99_ms (webhook sent → its
incident's `incident.opened` event received, at 500 alerts/s) and the peak RSS of each service.

The enricher and reporter run at a lower CPU priority (VIGIL_BACKGROUND_NICE) and fall behind in the storm;
`background_caught_up_s` is how long after the last alert was stored every incident's enrichment and reports
showed its final state, so the work they put off is measured, not hidden; `background_steps` counts what the
events they received led to (enrich, skip, defer...).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bench.measure import progress_for
from devstack.alertstorm import WebhookSender, alert, webhook
from devstack.harness import ALL_SERVICES, LocalVigil
from shared.contracts import INCIDENTS_EXCHANGE

progress = progress_for("pipeline")

THROUGHPUT_ALERTS = 60_000
BATCH = 50
CONCURRENCY = 16
LATENCY_RATE = 500
LATENCY_SECONDS = 20
PER_WEBHOOK = 5


async def stored_and_pending(db_url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
            )
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


CAUGHT_UP = """
SELECT count(*) FILTER (WHERE e.incident_revision = i.revision AND e.published
                          AND s.incident_revision = i.revision AND s.enrichment_version = e.version AND s.published),
       count(*)
FROM incidents i
LEFT JOIN enrichments e ON e.incident_id = i.id
LEFT JOIN report_sources s ON s.incident_id = i.id
"""


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
    """Seconds until every incident's enrichment and reports show its current revision, all announced."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(CAUGHT_UP)).fetchone()
            assert row is not None
            if row[0] == row[1]:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"only {row[0]} of {row[1]} incidents enriched and reported after {timeout:.0f}s")
            await asyncio.sleep(0.2)


async def throughput(vigil: LocalVigil, sender: WebhookSender) -> float:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    hosts = 300
    # The webhooks are built and encoded before the clock starts: on these two cores the load generator's own
    # work would otherwise be counted against Vigil (Alertmanager runs on another machine in real life).
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for i in range(THROUGHPUT_ALERTS // BATCH):
        host = f"tp-host-{i % hosts:03d}"
        alerts = [
            alert(f"BenchAlert{j}", host, starts_at=t0 + timedelta(seconds=i), labels={"batch": str(i)})
            for j in range(BATCH)
        ]
        queue.put_nowait(json.dumps(webhook(alerts)).encode())

    async def worker() -> None:
        while not queue.empty():
            if not await sender.send(queue.get_nowait()):
                raise RuntimeError("ingest refused a webhook")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    sent_s = time.perf_counter() - started
    progress(f"{THROUGHPUT_ALERTS} alerts accepted by ingest in {sent_s:.1f}s; waiting for the correlator")
    while True:
        stored, pending = await stored_and_pending(vigil.postgres.url)
        if stored >= THROUGHPUT_ALERTS and pending == 0:
            break
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"only {stored} of {THROUGHPUT_ALERTS} alerts stored after 600s")
        await asyncio.sleep(0.05)
    return THROUGHPUT_ALERTS / (time.perf_counter() - started)


async def latency(vigil: LocalVigil, sender: WebhookSender) -> list[float]:
    """Each webhook opens a new incident (a new host); its latency ends when `incident.opened` arrives."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    connection = await aio_pika.connect(vigil.rabbitmq.url())
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
    progress("starting PostgreSQL, RabbitMQ and the five services")
    async with LocalVigil() as vigil:
        sender = WebhookSender(f"{vigil.url('ingest')}/api/v1/webhooks/alertmanager", "harness-sender-token-01")
        try:
            measured = (*ALL_SERVICES, "postgres", "rabbitmq")
            cpu_before = {name: vigil.cpu_seconds(name) for name in measured}
            own_before = time.process_time()
            rate = await throughput(vigil, sender)
            cpu_after = {name: vigil.cpu_seconds(name) for name in measured}
            cpu = {name: round(cpu_after[name] - cpu_before[name], 1) for name in measured}
            cpu["load_generator"] = round(time.process_time() - own_before, 1)
            progress(f"sustained {rate:.0f} alerts/s; waiting for enrichment and reports to catch up")
            caught_up = await background_catch_up(vigil.postgres.url)
            background_cpu = {name: round(vigil.cpu_seconds(name) - cpu_after[name], 1) for name in measured}
            steps = {
                "enricher": await counter_by_label(vigil.url("enricher"), "vigil_enrichment_steps_total", "step"),
                "reporter": await counter_by_label(vigil.url("reporter"), "vigil_report_versions_total", "outcome"),
            }
            progress(f"caught up in {caught_up:.1f}s; now latency at {LATENCY_RATE} alerts/s")
            latencies = sorted(await latency(vigil, sender))
        finally:
            await sender.aclose()
        rss = {name: vigil.rss_peak_mb(name) for name in ALL_SERVICES}
    q = statistics.quantiles(latencies, n=100)
    print(
        json.dumps(
            {
                "bench": "e2e",
                "e2e_alerts_per_s": round(rate),
                "alerts": THROUGHPUT_ALERTS,
                "webhook_size": BATCH,
                "p50_ms": round(q[49], 1),
                "p99_ms": round(q[98], 1),
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
