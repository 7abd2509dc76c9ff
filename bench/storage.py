"""Storage: what a long storm costs PostgreSQL, and what retention gives back.

A storm of 50,000 alerts growing 300 incidents over 20 days, through the real correlator (`correlate_batch` and the
sweeper in process, on a throwaway PostgreSQL, in batches of 200 as its consumer lanes take them), with the enricher's
and the reporter's writes as they store them: an enrichment when an incident opens and when it resolves, and reports
rendered as it opens, while it stays open (a comment every few days) and when it resolves. Time is simulated: every
message carries the time it would have arrived, and the sweeper runs at the time it would have run. Most incidents
fire and resolve within 75 minutes; 20 open early and resolve late (some inside retention, some before it); 10 stay
open. There is no broker: an event is marked published at its simulated time, as the publisher would have done, and
so are the processed command ids.

Then report pruning and retention run with VIGIL_RETENTION_DAYS=10 and VIGIL_MESSAGE_RETENTION_DAYS=7. Before and
after: rows and bytes (pg_total_relation_size) per table, the database's size (pg_database_size), bytes per stored
alert. After is measured twice: after VACUUM (what autovacuum gives: the space is free for new rows, the files keep
their size) and after VACUUM FULL (what the remaining rows take). `lost_inside_retention` counts the incidents that
must remain (unresolved, resolved inside retention, or opened inside it) that are missing or lost a row; the audit of
the retention period must read the same before and after.

A second phase measures the alert path while retention deletes: the correlator's batch latency on a live stream,
alone and then while a pass with a shorter setting (3 days) deletes most of what is left.

    .venv/bin/python -m bench.storage
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.measure import percentile, progress_for
from devstack.throwaway import new_postgres, temp_root
from services.correlator import retention
from services.correlator.batches import correlate_batch, sweep
from services.correlator.rules import RuleSet, load_rules
from services.enricher.consumer import QUERIES as ENRICHER_QUERIES
from services.reporter import pruning, report_store
from services.reporter.versions import Source
from shared.contracts import MessageType, RawEnvelope, command_type
from shared.db import migrate, open_pool
from shared.fingerprint import label_fingerprint
from shared.incident_context import ContextEvent, IncidentContext, LogBurst, LogLine, SecurityEvent, SeriesSummary
from shared.messaging import Delivery
from shared.reports import incident_report
from shared.reports.rendering import render_all

progress = progress_for("storage")

ALERTS = 50_000
INCIDENTS = 300
LONG = 20  # open early, one alert repeated until they resolve late
OPEN = 10  # still firing at the end
SLOTS = 30
STORM_DAYS = 20
RETENTION_DAYS = 10
MESSAGE_RETENTION_DAYS = 7
SHORT_RETENTION_DAYS = 3  # the second phase
COMMENT_EVERY = 5  # slots between comments (and renderings) of a long incident
SWEEPS = (timedelta(minutes=30), timedelta(minutes=65), timedelta(minutes=75))  # after a slot's first alerts
BATCH = 200
LIVE_BATCH = 50
LIVE_BASELINE_BATCHES = 60
RULES_FILE = Path("deploy/correlation.yml").resolve()
TABLES = (
    "incidents",
    "alerts",
    "incident_timeline",
    "enrichments",
    "reports",
    "report_sources",
    "outbox",
    "processed_messages",
)


@dataclass(frozen=True)
class Planned:
    index: int
    kind: str  # short, long, open
    alerts: int
    opens: int  # slot
    resolves: int | None  # slot; None: stays open

    @property
    def host(self) -> str:
        return f"storm-{self.index:03d}"


def storm_plan() -> list[Planned]:
    """Which incident opens and resolves in which slot, and how many alerts it gets (50,000 in all)."""
    per, extra = divmod(ALERTS, INCIDENTS)
    out = []
    for i in range(INCIDENTS):
        alerts = per + (1 if i < extra else 0)
        if i < LONG:
            # Open in the first fifth of the storm, resolve in its second half: on either side of the cutoff.
            opens = i % (SLOTS // 5)
            out.append(Planned(i, "long", alerts, opens, SLOTS // 2 + (i * 7) % (SLOTS // 2)))
        elif i < LONG + OPEN:
            out.append(Planned(i, "open", alerts, (i * 3) % SLOTS, None))
        else:
            slot = (i - LONG - OPEN) % SLOTS
            out.append(Planned(i, "short", alerts, slot, slot))
    return out


def message(host: str, j: int, status: str, starts_at: datetime, received_at: datetime) -> Delivery:
    labels = {
        "alertname": f"Storm{j % 40}",
        "instance": f"{host}:9100",
        "job": "node",
        "severity": "critical" if j % 10 == 0 else "warning",
        "series": str(j),
    }
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
                "annotations": {
                    "summary": f"Storm{j % 40} on {host}: value above threshold",
                    "description": "The value has been above its threshold for 5 minutes.\nCheck the host.",
                    "runbook_url": f"https://runbooks.example/Storm{j % 40}",
                },
                "startsAt": starts_at.isoformat(),
                "endsAt": received_at.isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": f"http://prometheus.example:9090/graph?g0.expr=storm_{j % 40}%7Bhost%3D%22{host}%22%7D",
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
    return Delivery(RawEnvelope.model_validate(envelope), None, 0)  # type: ignore[arg-type]


def command(key: str, action: str, at: datetime, comment: str = "") -> Delivery:
    envelope = {
        "id": str(uuid.uuid4()),
        "type": command_type(action),
        "version": 1,
        "occurred_at": at.isoformat(),
        "producer": "web",
        "data": {"key": key, "action": action, "actor": "alice", "comment": comment, "requested_at": at.isoformat()},
    }
    return Delivery(RawEnvelope.model_validate(envelope), None, 0)  # type: ignore[arg-type]


def context(key: str, host: str, at: datetime) -> IncidentContext:
    """An enrichment the size the enricher stores: six series of 150 points, log lines, bursts, bans."""
    start = at - timedelta(hours=1)
    points = [(start + timedelta(seconds=30 * n), round(20 + (n * 7919 % 61) * 0.9, 2)) for n in range(150)]
    return IncidentContext(
        incident_key=key,
        window_start=start,
        window_end=at + timedelta(minutes=30),
        generated_at=at,
        complete=True,
        metrics=[
            SeriesSummary(
                name=name,
                query=f'{name}{{instance="{host}:9100"}}',
                labels={"instance": f"{host}:9100"},
                unit="%",
                min=20.0,
                avg=47.0,
                max=74.0,
                p95=72.0,
                peak=74.0,
                peak_at=at,
                baseline=25.0,
                deviation_at=start,
                points=points,
            )
            for name in ("cpu", "memory", "disk", "load", "network_in", "network_out")
        ],
        logs=[
            LogLine(at=at, labels={"job": "app", "host": host}, line=f"error: request {n} failed: upstream timed out")
            for n in range(50)
        ],
        log_lines_total=12_345,
        error_bursts=[LogBurst(minute=start + timedelta(minutes=m), errors=m % 17) for m in range(30)],
        security_events=[
            SecurityEvent(at=at, action="ban", ip=f"203.0.113.{n}", jail="sshd", host=host) for n in range(5)
        ],
        timeline=[ContextEvent(at=at, kind="metric_peak", title=f"cpu peak {n}") for n in range(10)],
    )


class Storm:
    def __init__(self, pool: AsyncConnectionPool, rules: RuleSet, now: datetime) -> None:
        self.pool, self.rules, self.now = pool, rules, now
        self.start = now - timedelta(days=STORM_DAYS)
        self.slot_len = timedelta(days=STORM_DAYS - 1) / SLOTS
        self.keys: dict[str, str] = {}  # host -> incident key
        self.renderings = 0
        self.messages = 0

    def at(self, slot: int) -> datetime:
        return self.start + slot * self.slot_len

    async def correlate(self, deliveries: Sequence[Delivery]) -> None:
        for i in range(0, len(deliveries), BATCH):
            await correlate_batch(self.pool, self.rules, list(deliveries[i : i + BATCH]))
        self.messages += len(deliveries)

    async def learn_keys(self) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT key, hosts[1] AS host FROM incidents")
            self.keys = {r["host"]: r["key"] for r in await cur.fetchall()}

    async def enrich(self, planned: Sequence[Planned], at: datetime) -> None:
        async with self.pool.connection() as conn:
            for p in planned:
                cur = await conn.execute("SELECT id, revision FROM incidents WHERE key = %s", (self.keys[p.host],))
                row = await cur.fetchone()
                assert row is not None
                ctx = context(self.keys[p.host], p.host, at)
                await conn.execute(
                    ENRICHER_QUERIES.upsert_enrichment,
                    {
                        "incident_id": row["id"],
                        "revision": row["revision"],
                        "complete": True,
                        "context": Jsonb(ctx.model_dump(mode="json")),
                    },
                )
                await conn.commit()

    async def render(self, planned: Sequence[Planned]) -> None:
        for p in planned:
            key = self.keys[p.host]
            async with self.pool.connection() as conn:
                report = await incident_report.load(conn, key)
            assert report is not None
            rendered = await asyncio.to_thread(render_all, report)
            async with self.pool.connection() as conn:
                await report_store.store(
                    conn, key, rendered, Source(report.revision, report.context_version), state=report.state
                )
            self.renderings += 1

    async def age_messages(self, at: datetime, started: datetime) -> None:
        """What the publisher and the command handling would have stamped at the simulated time."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE outbox SET created_at = %s, published_at = %s WHERE published_at IS NULL",
                (at, at + timedelta(seconds=1)),
            )
            await conn.execute(
                "UPDATE processed_messages SET processed_at = %s WHERE processed_at >= %s", (at, started)
            )
            await conn.commit()

    async def run(self, plan: list[Planned], started: datetime) -> None:
        for slot in range(SLOTS):
            t = self.at(slot)
            opening = [p for p in plan if p.opens == slot]
            going_on = [
                p for p in plan if p.kind != "short" and p.opens < slot and (p.resolves is None or p.resolves >= slot)
            ]
            deliveries = [
                message(p.host, j, "firing", t - timedelta(minutes=1) + timedelta(seconds=j), t + timedelta(seconds=j))
                for p in opening
                for j in range(p.alerts)
            ]
            # Alertmanager repeats what still fires: the one alert a long incident keeps firing.
            deliveries += [message(p.host, 0, "firing", self.at(p.opens) - timedelta(minutes=1), t) for p in going_on]
            await self.correlate(deliveries)
            await self.learn_keys()
            acks = [command(self.keys[p.host], "acknowledge", t + timedelta(minutes=5)) for p in opening[::3]]
            comments = [
                command(self.keys[p.host], "comment", t + timedelta(minutes=6), f"still on it, day {slot}")
                for p in going_on
                if (slot - p.opens) % COMMENT_EVERY == 0
            ]
            await self.correlate(acks + comments)
            await self.enrich(opening, t + timedelta(minutes=2))
            await self.render(opening + [p for p in going_on if (slot - p.opens) % COMMENT_EVERY == 0])
            ended = t + timedelta(minutes=20)
            resolving = [
                message(p.host, j, "resolved", self.at(p.opens) - timedelta(minutes=1) + timedelta(seconds=j), ended)
                for p in opening
                # Long and open incidents keep alert 0 firing; the rest of their alerts end now.
                for j in range(0 if p.kind == "short" else 1, p.alerts)
            ]
            resolving += [
                message(p.host, 0, "resolved", self.at(p.opens) - timedelta(minutes=1), ended)
                for p in going_on
                if p.resolves == slot
            ]
            await self.correlate(resolving)
            # The sweeper, as it runs every few seconds: a mass resolve looks like flapping (the rules' 6 changes in
            # 30 minutes), which calms down after the flapping window, and the incident resolves after the grace.
            for after in SWEEPS:
                await sweep(self.pool, self.rules, t + after)
            resolved = [p for p in plan if p.resolves == slot]
            await self.enrich(resolved, t + SWEEPS[-1] + timedelta(minutes=1))
            await self.render(resolved)
            await self.age_messages(t, started)
            progress(f"slot {slot + 1}/{SLOTS}: {self.messages} messages, {self.renderings} renderings")


async def figures(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    rows, sizes = {}, {}
    for table in TABLES:
        cur = await conn.execute(f"SELECT count(*) AS n, pg_total_relation_size('{table}') AS b FROM {table}")  # type: ignore[arg-type]  # noqa: S608
        row = await cur.fetchone()
        assert row is not None
        rows[table], sizes[table] = row["n"], row["b"]
    cur = await conn.execute("SELECT pg_database_size(current_database()) AS b")
    db = (await cur.fetchone() or {})["b"]
    tables = sum(sizes.values())
    return {
        "rows": rows,
        "bytes": sizes,
        "tables_bytes": tables,
        "database_bytes": db,
        "tables_bytes_per_alert": round(tables / rows["alerts"]) if rows["alerts"] else None,
        "database_bytes_per_alert": round(db / rows["alerts"]) if rows["alerts"] else None,
    }


async def incidents_snapshot(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    cur = await conn.execute(
        """SELECT i.key, i.state, i.opened_at, i.resolved_at, i.alert_count, i.revision,
                  (SELECT count(*) FROM alerts a WHERE a.incident_id = i.id) AS alerts,
                  (SELECT count(*) FROM incident_timeline t WHERE t.incident_id = i.id) AS timeline,
                  (SELECT count(*) FROM enrichments e WHERE e.incident_id = i.id) AS enrichments,
                  (SELECT max(version) FROM reports r WHERE r.incident_id = i.id) AS newest_report
           FROM incidents i"""
    )
    return {r["key"]: r for r in await cur.fetchall()}


def must_remain(incident: dict[str, Any], horizon: datetime) -> bool:
    """Independently of retention's own rule: what an audit or a responder inside retention still needs."""
    return incident["state"] != "resolved" or incident["resolved_at"] >= horizon or incident["opened_at"] >= horizon


async def audit_figures(conn: psycopg.AsyncConnection[Any], since: datetime, until: datetime) -> dict[str, Any]:
    """The figures an audit of [since, until) is made of (as services/reporter/audit.sql selects them)."""
    cur = await conn.execute(
        """SELECT count(*) AS incidents, count(*) FILTER (WHERE state <> 'resolved') AS still_open,
                  sum(alert_count) AS alert_count,
                  avg(extract(epoch FROM resolved_at - opened_at)) AS mttr_s,
                  (SELECT count(*) FROM alerts a JOIN incidents j ON j.id = a.incident_id
                   WHERE j.announced AND j.opened_at >= %(since)s AND j.opened_at < %(until)s) AS alerts
           FROM incidents WHERE announced AND opened_at >= %(since)s AND opened_at < %(until)s""",
        {"since": since, "until": until},
    )
    row = await cur.fetchone()
    assert row is not None
    return {k: (float(v) if v is not None and k == "mttr_s" else v) for k, v in row.items()}


async def vacuum(url: str, *, full: bool) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM (FULL, ANALYZE)" if full else "VACUUM (ANALYZE)")


async def live_latencies(
    pool: AsyncConnectionPool, rules: RuleSet, hosts: Sequence[str], batches: int | None, until: asyncio.Event
) -> list[float]:
    """Batches of new alerts, one after the other, each timed: every other one on a host of the storm (its group's
    lock is the one retention takes to delete the host's old incidents), the others on new hosts."""
    out: list[float] = []
    n = 0
    while (batches is None and not until.is_set()) or (batches is not None and n < batches):
        now = datetime.now(UTC)
        host = hosts[n % len(hosts)] if n % 2 else f"live-{uuid.uuid4().hex[:6]}"
        batch = [message(host, 1000 + n * LIVE_BATCH + j, "firing", now, now) for j in range(LIVE_BATCH)]
        started = time.perf_counter()
        await correlate_batch(pool, rules, batch)
        out.append((time.perf_counter() - started) * 1000)
        n += 1
        await asyncio.sleep(0.02)
    return out


def pct(values: list[float], q: float) -> float:
    return round(percentile(values, q), 1)


async def run(url: str) -> dict[str, Any]:
    await migrate(url)
    rules = load_rules(RULES_FILE)
    async with await open_pool(url, max_size=4) as pool:
        async with pool.connection() as conn:
            now = (await (await conn.execute("SELECT now() AS now")).fetchone() or {})["now"]
        plan = storm_plan()
        storm = Storm(pool, rules, now)
        started = time.perf_counter()
        await storm.run(plan, now)
        storm_s = time.perf_counter() - started
        await vacuum(url, full=False)
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            before = await figures(conn)
            snapshot = await incidents_snapshot(conn)
            db_now = (await (await conn.execute("SELECT now() AS now")).fetchone() or {})["now"]
            # A period inside retention: from an hour after the horizon retention will use (its clock runs on while
            # the versions are pruned) to now.
            inside = db_now - timedelta(days=RETENTION_DAYS) + timedelta(hours=1)
            audit_before = await audit_figures(conn, inside, db_now)

        progress("pruning report versions")
        started = time.perf_counter()
        pruned = await pruning.run_pass(pool)
        prune_s = time.perf_counter() - started
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            reports_after_pruning = (await (await conn.execute("SELECT count(*) AS n FROM reports")).fetchone() or {})[
                "n"
            ]

        progress("retention")
        policy = retention.Policy(timedelta(days=RETENTION_DAYS), timedelta(days=MESSAGE_RETENTION_DAYS))
        started = time.perf_counter()
        deleted = await retention.run_pass(pool, policy)
        retention_s = time.perf_counter() - started

        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            after_snapshot = await incidents_snapshot(conn)
            audit_after = await audit_figures(conn, inside, db_now)
            recorded = (await (await conn.execute("SELECT deleted_before FROM retention_horizon")).fetchone() or {})[
                "deleted_before"
            ]
        await vacuum(url, full=False)
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            after_vacuum = await figures(conn)
        await vacuum(url, full=True)
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, autocommit=True) as conn:
            after_full = await figures(conn)

        kept = {k for k, inc in snapshot.items() if must_remain(inc, recorded)}
        # Every row count the same, and the same newest report (older versions were pruned, not lost).
        lost = sorted(k for k in kept if k not in after_snapshot or after_snapshot[k] != snapshot[k])
        expired_left = sorted(k for k in after_snapshot if k in snapshot and k not in kept)

        progress("the alert path while retention deletes")
        never = asyncio.Event()
        hosts = [p.host for p in plan if p.kind == "short"]
        baseline = await live_latencies(pool, rules, hosts[::2], LIVE_BASELINE_BATCHES, never)
        done = asyncio.Event()
        shorter = retention.Policy(timedelta(days=SHORT_RETENTION_DAYS), timedelta(days=MESSAGE_RETENTION_DAYS))
        durations: list[float] = []
        timed = retention._incident_batch

        async def timed_batch(*args: Any) -> Any:
            # Each batch is one transaction: its duration bounds how long it holds a group's lock.
            t0 = time.perf_counter()
            try:
                return await timed(*args)
            finally:
                durations.append((time.perf_counter() - t0) * 1000)

        retention._incident_batch = timed_batch  # type: ignore[assignment]
        try:
            live = asyncio.create_task(live_latencies(pool, rules, hosts[1::2], None, done))
            second = await retention.run_pass(pool, shorter)
            done.set()
            during = await live
        finally:
            retention._incident_batch = timed  # type: ignore[assignment]

    return {
        "bench": "storage",
        "alerts": ALERTS,
        "incidents": INCIDENTS,
        "storm_messages": storm.messages,
        "storm_renderings": storm.renderings,
        "storm_s": round(storm_s, 1),
        "retention_days": RETENTION_DAYS,
        "message_retention_days": MESSAGE_RETENTION_DAYS,
        "before": before,
        "after_vacuum": after_vacuum,
        "after_vacuum_full": after_full,
        "report_rows_pruned": pruned.rows,
        "reports_after_pruning": reports_after_pruning,
        "prune_s": round(prune_s, 1),
        "retention_deleted": dict(deleted.deleted),
        "retention_s": round(retention_s, 1),
        "incidents_that_must_remain": len(kept),
        "lost_inside_retention": len(lost),
        "lost_keys": lost[:10],
        "expired_left": len(expired_left),
        "audit_inside_retention_unchanged": audit_before == audit_after,
        "audit_inside_retention": audit_after,
        "alert_batch_ms_alone": {"p50": pct(baseline, 0.5), "p99": pct(baseline, 0.99), "n": len(baseline)},
        "alert_batch_ms_during_retention": {"p50": pct(during, 0.5), "p99": pct(during, 0.99), "n": len(during)},
        "retention_batch_ms": {
            "p50": pct(durations, 0.5),
            "max": round(max(durations), 1),
            "n": len(durations),
            "mean": round(statistics.fmean(durations), 1),
        },
        "second_pass_deleted": dict(second.deleted),
    }


def main() -> int:
    root = temp_root("vigil-bench-storage-")
    pg = new_postgres(root)
    try:
        progress("starting PostgreSQL")
        pg.start()
        result = asyncio.run(run(pg.url))
        print(json.dumps(result), flush=True)
        return 0 if result["lost_inside_retention"] == 0 and result["expired_left"] == 0 else 1
    finally:
        pg.stop()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
