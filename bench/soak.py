"""A soak (`make bench SOAK=1`, or `python -m bench soak`): 1,000 alerts/s for 10 minutes of the grouped storm's shape
(devstack.alertstorm.grouped_storm: one alert name across 50 of 2,000 hosts per webhook, one alert in ten a resolve),
all five services running. Prints one JSON line per minute (`soak_minute`: p99 of the webhooks sent in it, each
service's RSS at its end, how far storing lags behind sending) and one at the end (`soak`): RSS growth after the
first minute's warm-up per service (target: under 10 %), the p99s per minute, database bytes per alert, and whether
ingest ever answered 503 (a confirm timeout or a refused publish).

VIGIL_BENCH_SOAK_MINUTES and VIGIL_BENCH_SOAK_RATE change the length and the rate, for a shorter look.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.measure import progress_for
from devstack.alertstorm import WebhookSender, grouped_storm
from devstack.harness import ALL_SERVICES, LocalVigil

progress = progress_for("soak")

MINUTES = int(os.environ.get("VIGIL_BENCH_SOAK_MINUTES", "10"))
RATE = int(os.environ.get("VIGIL_BENCH_SOAK_RATE", "1000"))
PER_WEBHOOK = 50
SIZE = """SELECT pg_database_size(current_database()), (SELECT count(*) FROM alerts),
                 (SELECT count(*) FROM alerts WHERE status = 'resolved')"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def database(db_url: str) -> tuple[int, int, int]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        row = await (await conn.execute(SIZE)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def main() -> None:
    progress("starting PostgreSQL, RabbitMQ and the five services")
    async with LocalVigil() as vigil:
        sender = WebhookSender(f"{vigil.url('ingest')}/api/v1/webhooks/alertmanager", "harness-sender-token-01")
        bytes_before, _, _ = await database(vigil.database_url)
        t0 = datetime.now(UTC) - timedelta(minutes=1)
        webhooks_per_minute = RATE * 60 // PER_WEBHOOK
        interval = PER_WEBHOOK / RATE
        minutes: list[dict[str, object]] = []
        sent_alerts = firing = 0
        tasks: set[asyncio.Task[bool]] = set()
        try:
            # A minute's webhooks are made while the minute before is sent: the storm goes on from one minute to
            # the next on the same 2,000 hosts, with label sets never used before.
            def build(minute: int) -> tuple[list[bytes], int, int]:
                storm = grouped_storm(
                    webhooks_per_minute * PER_WEBHOOK, t0=t0, prefix="soak", first=minute * webhooks_per_minute
                )
                alerts = [a for w in storm for a in w["alerts"]]
                firing_now = sum(a["status"] == "firing" for a in alerts)
                return [json.dumps(w).encode() for w in storm], len(alerts), firing_now

            upcoming = asyncio.create_task(asyncio.to_thread(build, 0))
            for minute in range(MINUTES):
                bodies, alerts, new_firing = await upcoming
                if minute + 1 < MINUTES:
                    upcoming = asyncio.create_task(asyncio.to_thread(build, minute + 1))
                sent_alerts += alerts
                firing += new_firing
                first = len(sender.latencies_ms)
                next_at = time.perf_counter()
                for body in bodies:
                    task = asyncio.create_task(sender.send(body))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                latencies = sorted(sender.latencies_ms[first:])
                size, stored, _ = await database(vigil.database_url)
                row = {
                    "bench": "soak_minute",
                    "minute": minute + 1,
                    "p99_ms": round(statistics.quantiles(latencies, n=100)[98], 1) if len(latencies) > 1 else None,
                    "webhooks_answered": len(latencies),
                    "alerts_sent": sent_alerts,
                    "alerts_stored": stored,
                    "storing_behind": firing - stored,
                    "rss_mb": {name: rss_mb(vigil.pid(name)) for name in ALL_SERVICES},
                    "unavailable_s": len(sender.unavailable_at),
                }
                minutes.append(row)
                print(json.dumps(row), flush=True)
            await asyncio.gather(*tasks)
            deadline = time.monotonic() + 600
            while (await database(vigil.database_url))[1] < firing and time.monotonic() < deadline:
                await asyncio.sleep(1)
            size, stored, _ = await database(vigil.database_url)
        finally:
            await sender.aclose()
    warm = minutes[0]["rss_mb"]
    end = minutes[-1]["rss_mb"]
    assert isinstance(warm, dict) and isinstance(end, dict)
    print(
        json.dumps(
            {
                "bench": "soak",
                "minutes": MINUTES,
                "rate_alerts_per_s": RATE,
                "alerts_sent": sent_alerts,
                "alerts_stored": stored,
                "rss_growth_after_warmup_pct": {
                    name: round(100 * (end[name] - warm[name]) / warm[name], 1) for name in ALL_SERVICES
                },
                "target_rss_growth_pct": 10,
                "p99_ms_by_minute": [m["p99_ms"] for m in minutes],
                "database_bytes_per_alert": round((size - bytes_before) / max(1, stored)),
                "unavailable_s": len(sender.unavailable_at),
                "ingest_retries": sender.retries,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
