"""Ingest on its own: its own RabbitMQ node, `python -m services.ingest` as a real process, and a bounded
load from this process over loopback.

Prints one JSON line per figure:
- ingest_50 / ingest_1: throughput (alerts/s) with webhooks of 50 and of 1 alert, closed loop;
- ingest_rate_1000: latency p50/p99 of webhooks of one alert sent open-loop at a fixed 1,000 alerts/s
  over at most 64 connections, measured from when each was due (so a stall shows up in the tail, not
  hidden by the load generator waiting for it).
Every accepted alert is counted in the correlator's queue afterwards, by reading the queue's messages (ingest merges
the notifications that arrive while the broker confirms an earlier message, so a message holds one or more webhooks'
alerts): `lost` (alerts) must be 0 (negative: a request answered 503 whose message the broker still took, which the
sender's retry duplicates; at least once).
`*_cpu_us_per_alert` is the CPU time ingest and RabbitMQ spent per alert, which other load on a shared
machine does not skew: 1e6 / that is what one free core sustains.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import aiohttp

from bench.measure import percentile, progress_for
from devstack.alertstorm import alert, webhook
from devstack.procs import cpu_seconds, free_port, read_pid, spawn, stop_pid
from devstack.rabbitmq import RabbitMQ
from devstack.throwaway import new_rabbitmq, temp_root
from shared.messaging.topology import CORRELATOR_QUEUE

progress = progress_for("ingest")

TOKEN = "bench-" + secrets.token_hex(8)
PATH = "/api/v1/webhooks/alertmanager"
THROUGHPUT_ALERTS = {50: 100_000, 1: 15_000}
CONCURRENCY = {50: 8, 1: 32}
RATE = 1_000
RATE_SECONDS = 15
RATE_CONNECTIONS = 64
MAX_SECONDS = 120  # per phase: the load stops by itself even if ingest crawls


def bodies(size: int, count: int) -> list[bytes]:
    """Distinct, realistic notifications, encoded once so the load generator spends little CPU."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    out = []
    for i in range(count):
        alerts = [
            alert(f"Alert{(i * size + j) % 97}", f"host{(i * size + j) % 500}", starts_at=start, severity="critical")
            for j in range(size)
        ]
        out.append(json.dumps(webhook(alerts)).encode())
    return out


def with_cpu(result: dict[str, object], pids: dict[str, int], before: dict[str, float]) -> dict[str, object]:
    alerts = int(result["alerts"]) or 1  # type: ignore[call-overload]
    for name, pid in pids.items():
        result[f"{name}_cpu_us_per_alert"] = round((cpu_seconds(pid) - before[name]) * 1e6 / alerts, 1)
    return result


async def publish_buckets(url: str) -> dict[float, float]:
    """Ingest's own histogram of time from publish to the last confirm, cumulative counts by bucket bound."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("vigil_ingest_publish_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rpartition(" ")[2])
    return buckets


def confirm_p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The bucket bound under which 99% of this phase's requests had every confirm (an upper bound)."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    for bound, count in counts.items():
        if total and count >= 0.99 * total:
            return bound * 1000
    return float("nan")


async def closed_loop(http: aiohttp.ClientSession, url: str, size: int) -> dict[str, object]:
    payloads = bodies(size, 200)
    requests = THROUGHPUT_ALERTS[size] // size
    latencies: list[float] = []
    failures = 0
    next_index = 0
    deadline = time.monotonic() + MAX_SECONDS
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal next_index, failures
        while next_index < requests and time.monotonic() < deadline:
            body = payloads[next_index % len(payloads)]
            next_index += 1
            started = time.perf_counter()
            async with http.post(url + PATH, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    failures += 1
                    continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY[size])))
    elapsed = time.perf_counter() - started
    return {
        "bench": f"ingest_{size}",
        "alerts_per_s": round(len(latencies) * size / elapsed),
        "webhooks_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "alerts": len(latencies) * size,
        "webhooks": len(latencies),
        "failed_requests": failures,
        "concurrency": CONCURRENCY[size],
    }


async def fixed_rate(url: str) -> dict[str, object]:
    payloads = bodies(1, 500)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures = 0
    total = RATE * RATE_SECONDS

    async def one(body: bytes, scheduled: float) -> None:
        nonlocal failures
        try:
            async with http.post(url + PATH, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
        except aiohttp.ClientError:
            ok = False
        if ok:
            # From when it was due, not when a connection was free: waiting in the client counts too.
            latencies.append((time.perf_counter() - scheduled) * 1000)
        else:
            failures += 1

    tasks = []
    # As many connections as a fleet of senders might hold; a stall queues requests here, not in sockets.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=RATE_CONNECTIONS))
    begin = time.perf_counter()
    for i in range(total):
        due = begin + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payloads[i % len(payloads)], due)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), MAX_SECONDS)
    finally:
        await http.close()
    elapsed = time.perf_counter() - begin
    return {
        "bench": "ingest_rate_1000",
        "rate_alerts_per_s": RATE,
        "achieved_alerts_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "alerts": len(latencies),
        "webhooks": len(latencies),
        "failed_requests": failures,
    }


async def queued(amqp_url: str, *, purge: bool = False) -> int:
    """Messages ready in the correlator's queue, exact (AMQP passive declare; the management API's counts lag)."""
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(CORRELATOR_QUEUE.name, passive=True)
        count = int(queue.declaration_result.message_count or 0)
        if purge:
            await queue.purge()
        return count


async def alerts_queued(amqp_url: str) -> int:
    """Alerts in the correlator's queue, read message by message (and taken: the next phase starts empty)."""
    alerts = 0
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(CORRELATOR_QUEUE.name, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            alerts += len(json.loads(message.body)["data"]["alerts"])
    return alerts


async def wait_ready(url: str, within: float = 60) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("ingest did not become ready")


async def run(node: RabbitMQ, url: str, pids: dict[str, int]) -> list[dict[str, object]]:
    await wait_ready(url)
    results = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        for size in (50, 1):
            progress(f"throughput, webhooks of {size}")
            await queued(node.url(), purge=True)
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            buckets = await publish_buckets(url)
            result = with_cpu(await closed_loop(http, url, size), pids, before)
            result["confirm_p99_ms_at_most"] = confirm_p99_ms(buckets, await publish_buckets(url))
            result["lost"] = int(result["alerts"]) - await alerts_queued(node.url())  # type: ignore[call-overload]
            results.append(result)
            print(json.dumps(result), flush=True)
        progress(f"latency at {RATE} alerts/s for {RATE_SECONDS}s")
        await queued(node.url(), purge=True)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        buckets = await publish_buckets(url)
        result = with_cpu(await fixed_rate(url), pids, before)
        result["confirm_p99_ms_at_most"] = confirm_p99_ms(buckets, await publish_buckets(url))
        result["lost"] = int(result["alerts"]) - await alerts_queued(node.url())  # type: ignore[call-overload]
        results.append(result)
        print(json.dumps(result), flush=True)
    return results


def main() -> int:
    root = temp_root("vigil-bench-ingest-")
    node = new_rabbitmq(root)
    ingest = None
    try:
        progress("starting RabbitMQ")
        node.start()
        port = free_port()
        env = {
            "VIGIL_AMQP_URL": node.url(),
            "VIGIL_INGEST_PORT": str(port),
            "VIGIL_HOST": "127.0.0.1",
            "VIGIL_INGEST_TOKEN": TOKEN,
            "VIGIL_STATE_DIR": str(root),
            "VIGIL_LOG_LEVEL": "WARNING",
        }
        ingest = spawn([sys.executable, "-m", "services.ingest"], log=root / "ingest.log", env=env, cwd=Path.cwd())
        if os.environ.get("BENCH_INGEST_PID_FILE"):  # lets a profiler attach: py-spy record --pid
            Path(os.environ["BENCH_INGEST_PID_FILE"]).write_text(str(ingest.pid))
        pids = {"ingest": ingest.pid, "rabbitmq": read_pid(node.pid_file) or 0}
        asyncio.run(run(node, f"http://127.0.0.1:{port}", {k: v for k, v in pids.items() if v}))
        return 0
    finally:
        if ingest is not None:
            stop_pid(ingest.pid, timeout=30)
        node.stop()
        if ingest is not None and ingest.returncode not in (None, 0, -15):
            progress((root / "ingest.log").read_text()[-3000:])
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
