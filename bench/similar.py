"""Similar past incidents at size: the read model's lookup (`shared.readmodel.incidents.similar`, what the incident
page, the API and the reports call) against a throwaway PostgreSQL holding 100,000 announced incidents with realistic
signatures, loaded with COPY:

- 20 rules, `default` holding 60 % of the incidents; 20 alert names, 1 to 3 per incident, most from their rule's few;
- group labels: one of 2,000 hosts (a few noisy hosts hold many incidents) and an environment (`prod` for 90 %);
- 60 % enriched with error-burst log templates: 1 to 6 of 50 kinds, a few kinds far more common than the rest;
- timelines of alert entries with a comment on a third of the incidents.

Prints one JSON line, similar_incidents_100k: p50/p95/p99 of the lookup for 300 incidents spread over the year
(target: p95 under 50 ms), the share that found five, and the signature table's rows and size.

    .venv/bin/python -m bench.similar
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.measure import migrated_postgres, percentile_nearest_rank, progress_for
from shared.db import open_pool
from shared.readmodel import incidents
from shared.signatures import incident_tokens

progress = progress_for("similar")

INCIDENTS = 100_000
LOOKUPS = 300
WARMUP = 30
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = ["default", *(f"rule-{n:02d}" for n in range(1, 20))]
ALERTNAMES = [
    "HostDown", "DiskFull", "HighCPU", "Http5xx", "MemoryPressure", "ProbeFailed", "HighLatency", "CertExpiring",
    "ReplicationLag", "QueueBacklog", "PodCrashLooping", "OOMKilled", "NodeNotReady", "TooManyConnections",
    "SlowQueries", "BackupFailed", "LoadHigh", "ClockSkew", "InodesLow", "SwapHigh",
]  # fmt: skip
HOSTS = [f"host-{n:04d}" for n in range(2000)]
LOG_KINDS = [
    f"{word} <num> {what} after <num>ms on <ip>"
    for word in ("ERROR", "FATAL", "CRIT", "panic:", "failed:")
    for what in ("db timeout", "connection refused", "worker crashed", "disk full", "oom", "tls handshake",
                 "upstream reset", "lock wait", "queue full", "dns lookup")
]  # fmt: skip
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]


def signatures(rng: random.Random) -> Iterator[tuple[int, str, str, set[tuple[str, str]]]]:
    """(number, state, host, tokens) per incident, in opening order."""
    host_weights = [1 / (n + 1) ** 0.8 for n in range(len(HOSTS))]  # a few noisy hosts, a long tail
    kind_weights = [1 / (n + 1) for n in range(len(LOG_KINDS))]
    for number in range(1, INCIDENTS + 1):
        rule = "default" if rng.random() < 0.6 else rng.choice(RULES[1:])
        own = ALERTNAMES[RULES.index(rule) % 20 :][:3] or ALERTNAMES[:3]
        names = {rng.choice(own) if rng.random() < 0.8 else rng.choice(ALERTNAMES) for _ in range(rng.randint(1, 3))}
        host = rng.choices(HOSTS, host_weights)[0]
        labels = {"host": host, "env": "prod" if rng.random() < 0.9 else "stage"}
        templates: list[str] = []
        if rng.random() < 0.6:
            templates = list(dict.fromkeys(rng.choices(LOG_KINDS, kind_weights, k=rng.randint(1, 6))))
        state = rng.choice(("resolved",) * 8 + ("open", "acknowledged"))
        yield number, state, host, set(incident_tokens(rule, labels, names, templates))


def load(url: str) -> None:
    rng = random.Random(16)
    started = time.monotonic()
    drawn = list(signatures(rng))
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY incidents (key, rule, group_key, title, state, announced, severity, hosts, alert_count, opened_at,"
            " first_alert_at, last_alert_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by) FROM STDIN"
        ) as copy:
            for number, state, host, tokens in drawn:
                opened = T0 + timedelta(minutes=5 * number)
                rule = next(value for kind, value in tokens if kind == "rule")
                acked = opened + timedelta(minutes=rng.randint(1, 30)) if state != "open" else None
                resolved = opened + timedelta(minutes=rng.randint(31, 600)) if state == "resolved" else None
                copy.write_row(
                    (
                        f"INC-{number:06d}", rule, f"{rule}:{number}", f"incident {number} on {host}", state, True,
                        "warning", [host], 1, opened, opened, opened, acked, rng.choice(PEOPLE) if acked else None,
                        resolved, rng.choice(PEOPLE) if resolved else None,
                    )
                )  # fmt: skip
        cur.execute("CREATE TEMPORARY TABLE staged (number integer, kind text, value text)")
        with cur.copy("COPY staged (number, kind, value) FROM STDIN") as copy:
            for number, _, _, tokens in drawn:
                for kind, value in tokens:
                    copy.write_row((number, kind, value))
        progress(f"copied {INCIDENTS} incidents in {time.monotonic() - started:.1f}s")
        # Hashed by the database's own function, as every writer's statement does.
        cur.execute(
            "INSERT INTO incident_signature_tokens (incident_id, token, kind, opened_at)"
            " SELECT i.id, signature_token(s.kind, s.value), s.kind, i.opened_at"
            " FROM staged s JOIN incidents i ON i.key = 'INC-' || lpad(s.number::text, 6, '0')"
        )
        # Timelines: three alert entries each, and a comment on a third of the incidents.
        cur.execute(
            "INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)"
            " SELECT i.id, i.opened_at + make_interval(secs => n), 'alert_added', NULL, '{}'"
            " FROM incidents i CROSS JOIN generate_series(1, 3) AS n"
        )
        cur.execute(
            "INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)"
            " SELECT i.id, i.opened_at + interval '20 minutes', 'comment', 'alice',"
            " jsonb_build_object('comment', 'restarted the service on ' || i.hosts[1])"
            " FROM incidents i WHERE i.id % 3 = 0"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    progress(f"loaded incidents, signatures and timelines in {time.monotonic() - started:.1f}s")


async def measure(url: str) -> dict[str, Any]:
    rng = random.Random(7)
    pool = await open_pool(url, max_size=2)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT min(id) AS lo, max(id) AS hi FROM incidents")).fetchone()
            assert row is not None
            # Spread over the year, the later ones with more history before them.
            targets = [rng.randint(row["lo"] + 1000, row["hi"]) for _ in range(WARMUP + LOOKUPS)]
            times: list[float] = []
            found: list[int] = []
            for index, target in enumerate(targets):
                started = time.perf_counter()
                similar = await incidents.similar(conn, target)
                elapsed = (time.perf_counter() - started) * 1000
                if index >= WARMUP:
                    times.append(elapsed)
                    found.append(len(similar))
            size = await (
                await conn.execute(
                    "SELECT count(*) AS n, pg_total_relation_size('incident_signature_tokens') AS bytes"
                    " FROM incident_signature_tokens"
                )
            ).fetchone()
            assert size is not None
    finally:
        await pool.close()
    return {
        "bench": "similar_incidents_100k",
        "incidents": INCIDENTS,
        "lookups": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(percentile_nearest_rank(times, 0.95), 2),
        "p99_ms": round(percentile_nearest_rank(times, 0.99), 2),
        "max_ms": round(max(times), 2),
        "found_five_share": round(sum(n == 5 for n in found) / len(found), 3),
        "signature_rows": size["n"],
        "signature_table_mb": round(size["bytes"] / 1e6, 1),
        "target_p95_ms": 50,
    }


def main() -> int:
    with migrated_postgres("vigil-bench-similar-", progress) as url:
        load(url)
        print(json.dumps(asyncio.run(measure(url))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
