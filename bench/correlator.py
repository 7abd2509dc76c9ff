"""Correlator throughput with 100,000 alerts already stored: a backlog of Alertmanager-shaped alert messages
(as ingest publishes them: new firing alerts, repeats of known state, resolves) drained by one correlator
process, then a fixed-rate stream published while it runs. Reports alerts/s and the process's peak RSS.

    .venv/bin/python -m bench.correlator
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import psycopg

from bench.measure import progress_for
from devstack.postgres import Postgres
from devstack.procs import cpu_seconds, free_port, peak_rss_mb, read_pid, spawn, stop_pid, tree_cpu_seconds
from devstack.rabbitmq import RabbitMQ
from devstack.throwaway import new_postgres, new_rabbitmq, temp_root
from shared.contracts import ALERTS_EXCHANGE, MessageType, alert_routing_key
from shared.db import migrate
from shared.fingerprint import label_fingerprint
from shared.messaging import CORRELATOR_QUEUE, Broker

progress = progress_for("correlator")

STORED_INCIDENTS = 1_000
STORED_PER_INCIDENT = 100  # 100,000 alerts already stored
HOSTS = 400
ALERTS_PER_HOST = 50
ROUNDS = 3  # new, repeat, then 20% resolved and the rest repeated: 60,000 messages
STREAM_RATE = 3_000  # alerts/s for the live phase
STREAM_SECONDS = 20
TIMEOUT_S = 300
RULES_FILE = Path("deploy/correlation.yml").resolve()


def host_name(i: int) -> str:
    return f"bench-host-{i:04d}"


def seed(url: str, now: datetime) -> None:
    """100,000 old alerts in 1,000 resolved incidents, written with COPY (the stream's hosts among them)."""
    day_ago = now - timedelta(days=1)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY incidents (key, rule, group_key, group_labels, title, state, announced, severity, hosts, "
            "alert_count, firing_count, opened_at, first_alert_at, last_alert_at, last_seen_at, resolved_at, "
            "resolved_by) FROM STDIN"
        ) as copy:
            for i in range(STORED_INCIDENTS):
                host = host_name(i)
                copy.write_row(
                    (
                        f"INC-{i + 1:06d}",
                        "default",
                        f'default:{{"host":"{host}"}}',
                        json.dumps({"host": host}),
                        f"Old trouble on {host}",
                        "resolved",
                        True,
                        "warning",
                        [host],
                        STORED_PER_INCIDENT,
                        0,
                        day_ago,
                        day_ago,
                        day_ago,
                        day_ago,
                        day_ago + timedelta(minutes=30),
                        "correlator",
                    )
                )
        cur.execute("SELECT setval('incident_number_seq', %s)", (STORED_INCIDENTS,))
        ids = [r[0] for r in cur.execute("SELECT id FROM incidents ORDER BY id").fetchall()]
        with cur.copy(
            "COPY alerts (incident_id, fingerprint, starts_at, ends_at, status, alertname, severity, host, labels, "
            "first_seen_at, last_seen_at, resolved_at) FROM STDIN"
        ) as copy:
            for i, incident_id in enumerate(ids):
                host = host_name(i)
                for j in range(STORED_PER_INCIDENT):
                    labels = {"alertname": f"Old{j}", "instance": f"{host}:9100", "severity": "warning"}
                    copy.write_row(
                        (
                            incident_id,
                            label_fingerprint(labels),
                            day_ago,
                            day_ago + timedelta(minutes=20),
                            "resolved",
                            f"Old{j}",
                            "warning",
                            host,
                            json.dumps(labels),
                            day_ago,
                            day_ago,
                            day_ago + timedelta(minutes=20),
                        )
                    )
        conn.commit()
        cur.execute("ANALYZE")


def message(host: str, j: int, status: str, starts_at: datetime, received_at: datetime) -> tuple[str, bytes]:
    labels = {"alertname": f"Bench{j}", "instance": f"{host}:9100", "job": "node", "severity": "warning"}
    if j % 10 == 0:
        labels["severity"] = "critical"
    envelope = {
        "id": str(uuid.uuid4()),
        "type": MessageType.alert_received,
        "version": 1,
        "occurred_at": received_at.isoformat(),
        "producer": "ingest",
        "data": {
            "alert": {
                "status": status,
                "labels": labels,
                "annotations": {"summary": f"Bench{j} on {host}"},
                "startsAt": starts_at.isoformat(),
                "endsAt": received_at.isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph?g0.expr=up",
                "fingerprint": label_fingerprint(labels),
            },
            "source": "alertmanager",
            "sender": "alertmanager",
            "receiver": "vigil",
            "group_key": f'{{}}:{{instance="{host}:9100"}}',
            "group_labels": {"instance": f"{host}:9100"},
            "external_url": "",
            "received_at": received_at.isoformat(),
        },
    }
    return alert_routing_key(status, labels["severity"], labels["alertname"]), json.dumps(envelope).encode()


def backlog(now: datetime) -> list[tuple[str, bytes]]:
    """Notifications as Alertmanager sends them: each repeats the whole group of one host."""
    out = []
    starts = now - timedelta(minutes=30)
    for r in range(ROUNDS):
        seen = starts + timedelta(minutes=r)
        for h in range(HOSTS):
            for j in range(ALERTS_PER_HOST):
                status = "resolved" if r == ROUNDS - 1 and j % 5 == 0 else "firing"
                out.append(message(host_name(h), j, status, starts + timedelta(seconds=j), seen))
    return out


def stream(now: datetime, count: int) -> list[tuple[str, bytes]]:
    """The live phase: new alerts on other hosts, in notifications of 50."""
    out = []
    starts = now - timedelta(minutes=5)
    for n in range(count):
        host = host_name(HOSTS + (n // ALERTS_PER_HOST) % 500)
        out.append(message(host, 100 + n, "firing", starts + timedelta(milliseconds=n), now))
    return out


async def publish(url: str, messages: list[tuple[str, bytes]], rate: float | None = None) -> float:
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ALERTS_EXCHANGE)
        started = time.perf_counter()
        chunk = 300
        for i in range(0, len(messages), chunk):
            part = messages[i : i + chunk]
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                        ),
                        key,
                    )
                    for key, body in part
                )
            )
            if rate:
                due = started + (i + len(part)) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        return time.perf_counter() - started


def queued(node: RabbitMQ) -> int:
    info = node.api("GET", f"/api/queues/%2F/{CORRELATOR_QUEUE.name}")
    assert isinstance(info, dict)
    return int(info.get("messages", 0) or 0)


async def wait_drained(node: RabbitMQ, db_url: str, expected_alerts: int) -> None:
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM alerts").fetchone()
        if row and row[0] >= expected_alerts and queued(node) == 0:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the correlator did not drain its queue in time")


async def run(pg: Postgres, node: RabbitMQ, root: Path) -> None:
    now = datetime.now(UTC)
    await migrate(pg.url)
    progress(f"storing {STORED_INCIDENTS * STORED_PER_INCIDENT} alerts with COPY")
    seed(pg.url, now)
    # Declare the topology, so the backlog waits in the correlator's queue before it starts.
    broker = Broker(node.url(), producer="bench")
    await broker.start()
    await broker.wait_connected()
    await broker.close()
    messages = backlog(now)
    progress(f"queueing a backlog of {len(messages)} alert messages")
    await publish(node.url(), messages)
    port = free_port()
    env = {
        "VIGIL_DATABASE_URL": pg.url,
        "VIGIL_AMQP_URL": node.url(),
        "VIGIL_CORRELATOR_PORT": str(port),
        "VIGIL_HOST": "127.0.0.1",
        "VIGIL_STATE_DIR": str(root),
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_CORRELATION_RULES": str(RULES_FILE),
        "VIGIL_PREFETCH": os.environ.get("BENCH_PREFETCH", "400"),
    }
    proc = spawn([sys.executable, "-m", "services.correlator"], log=root / "correlator.log", env=env, cwd=Path.cwd())
    if os.environ.get("BENCH_CORRELATOR_PID_FILE"):  # lets a profiler attach: py-spy record --pid
        Path(os.environ["BENCH_CORRELATOR_PID_FILE"]).write_text(str(proc.pid))  # noqa: ASYNC240
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("correlator did not become ready")
        pg_pid = read_pid(pg.data_dir / "postmaster.pid")
        mq_pid = read_pid(node.pid_file)
        started, cpu_before = time.perf_counter(), cpu_seconds(proc.pid)
        pg_before, mq_before = tree_cpu_seconds(pg_pid), tree_cpu_seconds(mq_pid)
        distinct = HOSTS * ALERTS_PER_HOST
        await wait_drained(node, pg.url, STORED_INCIDENTS * STORED_PER_INCIDENT + distinct)
        backlog_s = time.perf_counter() - started
        backlog_cpu_s = cpu_seconds(proc.pid) - cpu_before
        pg_cpu_s, mq_cpu_s = tree_cpu_seconds(pg_pid) - pg_before, tree_cpu_seconds(mq_pid) - mq_before
        progress(f"backlog drained in {backlog_s:.1f}s")
        live = stream(now, STREAM_RATE * STREAM_SECONDS)
        started = time.perf_counter()
        sent_s = await publish(node.url(), live, rate=STREAM_RATE)
        await wait_drained(node, pg.url, STORED_INCIDENTS * STORED_PER_INCIDENT + distinct + len(live))
        live_s = time.perf_counter() - started
        with psycopg.connect(pg.url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM incidents WHERE state <> 'resolved'),"
                " (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
            ).fetchone()
        assert row is not None
        result = {
            "bench": "correlator",
            "stored_alerts_before": STORED_INCIDENTS * STORED_PER_INCIDENT,
            "backlog_messages": len(messages),
            "alerts_per_s": round(len(messages) / backlog_s),
            # What one alert costs the correlator process, whatever else the two cores are busy with.
            "cpu_us_per_alert": round(backlog_cpu_s / len(messages) * 1e6),
            "postgres_cpu_us_per_alert": round(pg_cpu_s / len(messages) * 1e6),
            "rabbitmq_cpu_us_per_alert": round(mq_cpu_s / len(messages) * 1e6),
            "load_avg_1m": os.getloadavg()[0],
            "live_rate_offered": STREAM_RATE,
            "live_alerts_per_s": round(len(live) / live_s),
            "live_publish_s": round(sent_s, 2),
            "live_lag_s": round(live_s - sent_s, 2),
            "open_incidents": row[0],
            "outbox_unpublished": row[1],
            "peak_rss_mb": peak_rss_mb(proc.pid),
        }
        print(json.dumps(result), flush=True)
    finally:
        stop_pid(proc.pid, timeout=30)
        if proc.returncode not in (None, 0, -15):
            progress((root / "correlator.log").read_text()[-3000:])


def main() -> int:
    root = temp_root("vigil-bench-correlator-")
    pg = new_postgres(root)
    node = new_rabbitmq(root)
    try:
        progress("starting PostgreSQL and RabbitMQ")
        pg.start()
        node.start()
        asyncio.run(run(pg, node, root))
        return 0
    finally:
        node.stop()
        pg.stop()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
