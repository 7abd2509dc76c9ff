"""Enrichment latency per incident with Prometheus and Loki answering.

Starts a throwaway PostgreSQL and RabbitMQ, Debian's Prometheus scraping an exporter of this bench's own (node
exporter metrics for 20 hosts), the project's fake Loki (`python -m devstack.fakeloki`, its own process) holding
log lines, Fail2Ban bans and error bursts for those hosts, and the enricher in-process with deploy/enrichment.yml.
Seeds incidents, publishes their `incident.opened` events and times each one to its `incident.enriched`.

Prints one JSON line per figure:
- enricher_sequential: one incident at a time (no queueing): the latency of one enrichment.
- enricher_burst: every incident published at once: throughput and latency with the queue full.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx
import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench.measure import percentile_nearest_rank, progress_for
from devstack.procs import free_port, port_open, spawn, stop_pid, wait_until
from devstack.prometheus import Prometheus
from devstack.throwaway import new_postgres, new_rabbitmq, temp_root
from services.enricher.app import build_app
from services.enricher.config import load_config
from shared.config import Settings
from shared.contracts import INCIDENTS_EXCHANGE, Envelope, IncidentEvent, IncidentSnapshot, incident_routing_key
from shared.db import migrate
from shared.messaging import Broker

progress = progress_for("enricher")

HOSTS = 20
SCRAPE_S = 30
SEQUENTIAL = 30
BURST = 100
LOG_LINES_PER_HOST = 2000


class Exporter:
    """node-exporter's metric names for HOSTS hosts, each series carrying its host's `instance` (honor_labels)."""

    def __init__(self) -> None:
        self.scrapes = 0

    async def metrics(self, _: web.Request) -> web.Response:
        self.scrapes += 1
        n = self.scrapes
        lines = []
        for h in range(HOSTS):
            inst = f'instance="host-{h:02d}:9100"'
            busy = 0.9 if (h == 0 and n % 20 > 15) else 0.2
            lines += [
                f'node_cpu_seconds_total{{{inst},cpu="0",mode="idle"}} {n * (1 - busy):.3f}',
                f'node_cpu_seconds_total{{{inst},cpu="0",mode="user"}} {n * busy:.3f}',
                f"node_memory_MemAvailable_bytes{{{inst}}} {4e9 - (n % 10) * 1e8:.0f}",
                f"node_memory_MemTotal_bytes{{{inst}}} 8e9",
                f'node_filesystem_avail_bytes{{{inst},fstype="ext4",mountpoint="/"}} {50e9 - n * 1e6:.0f}',
                f'node_filesystem_size_bytes{{{inst},fstype="ext4",mountpoint="/"}} 100e9',
                f'node_network_receive_bytes_total{{{inst},device="eth0"}} {n * 1e6:.0f}',
                f'node_network_transmit_bytes_total{{{inst},device="eth0"}} {n * 5e5:.0f}',
            ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def push_logs(loki_url: str, now: datetime) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for h in range(HOSTS):
            host = f"host-{h:02d}"
            values = []
            for i in range(LOG_LINES_PER_HOST):
                at = now - timedelta(minutes=50) + timedelta(seconds=i * 1.5)
                line = f"{at:%b %d %H:%M:%S} {host} app[{i}]: " + ("ERROR upstream failed" if i % 40 < 8 else "ok")
                values.append([str(int(at.timestamp() * 1e9)), line])
            bans = [
                [
                    str(int((now - timedelta(minutes=m)).timestamp() * 1e9)),
                    f"2026-11-25 12:00:00,123 fail2ban.actions [812]: NOTICE  [sshd] Ban 203.0.113.{m}",
                ]
                for m in range(1, 30, 3)
            ]
            streams = [
                {"stream": {"host": host, "job": "varlogs"}, "values": values},
                {"stream": {"host": host, "job": "fail2ban"}, "values": bans},
            ]
            (await client.post(f"{loki_url}/loki/api/v1/push", json={"streams": streams})).raise_for_status()


async def seed(db_url: str, count: int, offset: int, now: datetime) -> list[IncidentSnapshot]:
    snapshots = []
    expr = quote('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))) > 90')
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        for n in range(offset, offset + count):
            host = f"host-{n % HOSTS:02d}"
            first = datetime.now(UTC) - timedelta(seconds=15)
            row = await (
                await conn.execute(
                    """INSERT INTO incidents (key, rule, group_key, group_labels, title, state, announced, severity,
                           hosts, opened_at, first_alert_at, last_alert_at, alert_count, firing_count)
                       VALUES (%s, 'default', %s, %s, %s, 'open', true, 'warning', %s, %s, %s, %s, 1, 1) RETURNING *""",
                    (
                        f"INC-{n:06d}",
                        f"default:{n}",
                        Jsonb({"host": host}),
                        f"HostHighCpu on {host}",
                        [host],
                        first,
                        first,
                        first,
                    ),
                )
            ).fetchone()
            assert row is not None
            labels = {"alertname": "HostHighCpu", "instance": f"{host}:9100", "job": "node", "seq": str(n)}
            await conn.execute(
                """INSERT INTO alerts (incident_id, fingerprint, starts_at, status, alertname, severity, host, labels,
                       generator_url, first_seen_at, last_seen_at)
                   VALUES (%s, %s, %s, 'firing', 'HostHighCpu', 'warning', %s, %s, %s, %s, %s)""",
                (
                    row["id"],
                    f"{n:016x}",
                    first,
                    host,
                    Jsonb(labels),
                    f"http://prometheus:9090/graph?g0.expr={expr}",
                    first,
                    first,
                ),
            )
            snapshots.append(
                IncidentSnapshot(
                    key=row["key"], title=row["title"], state="open", severity="warning", rule="default",
                    group_labels={"host": host}, hosts=[host], alert_count=1, firing_count=1, revision=1,
                    opened_at=first, first_alert_at=first, last_alert_at=first,
                )
            )  # fmt: skip
    return snapshots


async def run(base: Path, concurrency: int | None) -> None:
    postgres = new_postgres(base)
    rabbit = new_rabbitmq(base)
    exporter = Exporter()
    exporter_app = web.Application()
    exporter_app.router.add_get("/metrics", exporter.metrics)
    exporter_runner = web.AppRunner(exporter_app, access_log=None)
    exporter_port, loki_port = free_port(), free_port()
    prometheus = Prometheus(
        base / "prometheus",
        free_port(),
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: node\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n",
    )
    loki_proc = None
    enricher_runner = None
    started: list[str] = []
    try:
        progress("starting PostgreSQL, RabbitMQ, Prometheus, fake Loki")
        await asyncio.to_thread(postgres.start, fsync=False)
        started.append("postgres")
        await asyncio.to_thread(rabbit.start)
        started.append("rabbitmq")
        await exporter_runner.setup()
        await web.TCPSite(exporter_runner, "127.0.0.1", exporter_port).start()
        await asyncio.to_thread(prometheus.start)
        started.append("prometheus")
        loki_proc = spawn(
            [sys.executable, "-m", "devstack.fakeloki", "--port", str(loki_port)],
            log=base / "fakeloki.log",
            cwd=Path.cwd(),
        )
        await asyncio.to_thread(wait_until, lambda: port_open(loki_port), timeout=30, what="fake Loki")
        loki_url = f"http://127.0.0.1:{loki_port}"
        await migrate(postgres.url)
        now = datetime.now(UTC)
        await push_logs(loki_url, now)
        progress(f"letting Prometheus scrape for {SCRAPE_S} s")
        while exporter.scrapes < SCRAPE_S:
            await asyncio.sleep(0.5)

        settings = Settings(
            database_url=postgres.url,
            amqp_url=rabbit.url(),
            prometheus_url=prometheus.url,
            # The seeded alerts' generatorURLs name Prometheus as docker-compose does.
            prometheus_trusted_hosts=("prometheus:9090",),
            loki_url=loki_url,
            enricher_port=free_port(),
            database_pool_size=8,
        )
        deploy = load_config(Path("deploy/enrichment.yml"))
        # The deploy config, but a window Prometheus has data for: 5 min at 1 s steps (300 points per series,
        # as many as an hour at the deploy's 15 s step would give).
        window = deploy.window.model_copy(update={"before": timedelta(minutes=5), "min_step": timedelta(seconds=1)})
        config = deploy.model_copy(update={"window": window, "concurrency": concurrency or deploy.concurrency})
        broker = Broker(settings.amqp_url, producer="bench")
        await broker.start()
        await asyncio.wait_for(broker.wait_connected(), 60)
        channel = await broker.connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(INCIDENTS_EXCHANGE, "incident.enriched.#")
        arrived: dict[str, float] = {}
        waiters: dict[str, asyncio.Future[None]] = {}

        async def on_enriched(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                key = json.loads(message.body)["data"]["incident"]["key"]
                arrived[key] = time.perf_counter()
                if key in waiters and not waiters[key].done():
                    waiters[key].set_result(None)

        await queue.consume(on_enriched)
        enricher_runner = web.AppRunner(build_app(settings, config), access_log=None)
        await enricher_runner.setup()
        await web.TCPSite(enricher_runner, "127.0.0.1", settings.enricher_port).start()

        async def publish(snapshot: IncidentSnapshot) -> float:
            envelope = Envelope[IncidentEvent](
                type="incident.opened", producer="bench", data=IncidentEvent(incident=snapshot, change="opened")
            )
            sent = time.perf_counter()
            await broker.publish(INCIDENTS_EXCHANGE, incident_routing_key("incident.opened", "warning"), envelope)  # type: ignore[arg-type]
            return sent

        # Warm-up: connections, polars, the first Prometheus queries.
        for snapshot in await seed(postgres.url, 3, 900_000, now):
            waiters[snapshot.key] = asyncio.get_running_loop().create_future()
            await publish(snapshot)
            await asyncio.wait_for(waiters[snapshot.key], 60)

        progress(f"{SEQUENTIAL} incidents one at a time")
        latencies = []
        for snapshot in await seed(postgres.url, SEQUENTIAL, 1, now):
            waiters[snapshot.key] = asyncio.get_running_loop().create_future()
            sent = await publish(snapshot)
            await asyncio.wait_for(waiters[snapshot.key], 60)
            latencies.append((arrived[snapshot.key] - sent) * 1000)
        print(
            json.dumps(
                {
                    "bench": f"enricher_sequential_{SEQUENTIAL}",
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p99_ms": round(percentile_nearest_rank(latencies, 0.99), 1),
                    "max_ms": round(max(latencies), 1),
                    "prometheus_queries_per_incident": 7,
                    "loki_queries_per_incident": 3,
                }
            ),
            flush=True,
        )

        progress(f"{BURST} incidents at once")
        snapshots = await seed(postgres.url, BURST, 10_000, now)
        for snapshot in snapshots:
            waiters[snapshot.key] = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        sent_at = {s.key: await publish(s) for s in snapshots}
        await asyncio.wait_for(asyncio.gather(*(waiters[s.key] for s in snapshots)), 300)
        total = time.perf_counter() - start
        burst = [(arrived[k] - t) * 1000 for k, t in sent_at.items()]
        print(
            json.dumps(
                {
                    "bench": f"enricher_burst_{BURST}",
                    "incidents_per_s": round(BURST / total, 1),
                    "p50_ms": round(statistics.median(burst), 1),
                    "p99_ms": round(percentile_nearest_rank(burst, 0.99), 1),
                    "concurrency": config.concurrency,
                }
            ),
            flush=True,
        )
        async with await psycopg.AsyncConnection.connect(postgres.url) as conn:
            row = await (
                await conn.execute(
                    """SELECT count(*), count(*) FILTER (WHERE complete),
                              avg(jsonb_array_length(context->'metrics')), avg(jsonb_array_length(context->'logs')),
                              avg(pg_column_size(context))
                       FROM enrichments"""
                )
            ).fetchone()
        assert row is not None
        progress(
            f"enrichments stored: {row[0]}, complete: {row[1]}, per incident: {float(row[2]):.1f} series, "
            f"{float(row[3]):.0f} log lines, {float(row[4]) / 1024:.1f} KiB stored"
        )
        await channel.close()
        await broker.close()
    finally:
        if enricher_runner is not None:
            await enricher_runner.cleanup()
        await exporter_runner.cleanup()
        if loki_proc is not None:
            await asyncio.to_thread(stop_pid, loki_proc.pid, timeout=10)
        if "prometheus" in started:
            await asyncio.to_thread(prometheus.stop)
        if "rabbitmq" in started:
            await asyncio.to_thread(rabbit.stop)
        if "postgres" in started:
            await asyncio.to_thread(postgres.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Enrichment latency per incident")
    parser.add_argument("--concurrency", type=int, help="incidents enriched at once (default: deploy/enrichment.yml)")
    args = parser.parse_args()
    base = temp_root("vigil-bench-enricher-")
    try:
        asyncio.run(run(base, args.concurrency))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
