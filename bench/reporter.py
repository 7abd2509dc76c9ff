"""Reporter rendering at size.

Prints one JSON line per figure:
- reporter_incident_10k: one incident with 10,000 alerts (and a full enrichment) rendered to Markdown and XLSX
  (target: under 2 s for both); best and median of a few runs, and the time of each format.
- reporter_audit_100k: the audit of a period holding 100,000 incidents (200,000 alerts), computed by a throwaway
  PostgreSQL, read through server-side cursors and written as XLSX in write-only mode to a file, as the web exports it,
  in a child process whose peak RSS (VmHWM) is the figure (targets: under 30 s, under 500 MB), beside the same
  export of one day of it (3,456 incidents): `rss_over_1d_mb` is how much more memory the 30 days took (flat: ~0).
- reporter_audit_100k_md: the same as Markdown.
- reporter_audit_100k_json: the same as JSON.
Each audit holds the noise section (shared/insights/noise.py): its alerts carry notification counts as the correlator
stores them (`notifications`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from bench.measure import progress_for
from devstack.throwaway import new_postgres, temp_root
from shared.db import migrate
from shared.incident_context import ContextEvent, IncidentContext, LogBurst, LogLine, SecurityEvent, SeriesSummary
from shared.reports import audit, audit_json, audit_markdown, audit_xlsx, incident_markdown, incident_xlsx
from shared.reports.incident_content import build
from shared.reports.incident_report import IncidentReport, ReportAlert, TimelineEntry

progress = progress_for("reporter")

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
INCIDENT_ALERTS = 10_000
AUDIT_INCIDENTS = 100_000
ALERTS_PER_INCIDENT = 2
RUNS = 5
WRITERS = {"xlsx": audit_xlsx.write, "md": audit_markdown.write, "json": audit_json.write}


def big_incident() -> IncidentReport:
    alerts, timeline = [], [TimelineEntry(at=T0, kind="incident_opened", actor="correlator", detail={"title": "x"})]
    for i in range(INCIDENT_ALERTS):
        start = T0 + timedelta(seconds=i)
        host = f"host-{i % 500:03d}"
        alertname = f"Alert{i % 40}"
        alerts.append(
            ReportAlert(
                fingerprint=f"{i:016x}",
                alertname=alertname,
                severity=("critical", "warning")[i % 2],
                host=host,
                status=("firing", "resolved")[i % 2],
                starts_at=start,
                ends_at=start + timedelta(minutes=5) if i % 2 else None,
                first_seen_at=start,
                last_seen_at=start + timedelta(minutes=1),
                labels={"alertname": alertname, "instance": f"{host}:9100", "job": "node", "team": "ops"},
                annotations={
                    "summary": f"{alertname} on {host} | value {i}",
                    "description": "Something is wrong.\nCheck it.",
                    "runbook_url": f"https://runbooks.example/{alertname}",
                },
                generator_url=f"http://prometheus.example/graph?g0.expr=up%7Binstance%3D%22{host}%22%7D&i={i}",
            )
        )
        timeline.append(
            TimelineEntry(at=start, kind="alert_added", actor="system", detail={"alertname": alertname, "host": host})
        )
    points = [(T0 + timedelta(minutes=m), float(m % 37)) for m in range(-60, 120)]
    context = IncidentContext(
        incident_key="INC-000001",
        window_start=T0 - timedelta(hours=1),
        window_end=T0 + timedelta(hours=3),
        generated_at=T0 + timedelta(hours=3),
        complete=True,
        metrics=[
            SeriesSummary(name=f"series-{n}", query="up", labels={}, unit="%", peak=36.0, peak_at=T0, points=points)
            for n in range(6)
        ],
        logs=[LogLine(at=T0, labels={"job": "app"}, line=f"error {n} | <x>") for n in range(200)],
        log_lines_total=50_000,
        error_bursts=[LogBurst(minute=T0 + timedelta(minutes=m), errors=m) for m in range(60)],
        security_events=[SecurityEvent(at=T0, action="ban", ip=f"203.0.113.{n}", jail="sshd") for n in range(100)],
        timeline=[ContextEvent(at=T0, kind="metric_peak", title="peak") for _ in range(20)],
    )
    return IncidentReport(
        key="INC-000001",
        title="Storm of 10,000 alerts",
        state="open",
        severity="critical",
        rule="default",
        hosts=sorted({a.host or "" for a in alerts})[:50],
        revision=INCIDENT_ALERTS,
        alert_count=INCIDENT_ALERTS,
        firing_count=INCIDENT_ALERTS // 2,
        opened_at=T0,
        first_alert_at=T0,
        last_alert_at=alerts[-1].starts_at,
        alerts=alerts,
        timeline=timeline,
        context=context,
        context_version=1,
        as_of=T0 + timedelta(hours=3),
        alertmanager_url="https://alertmanager.example",
    )


def bench_incident() -> dict[str, object]:
    """Wall and CPU time of content + Markdown + XLSX; CPU time says what the code costs on a shared, busy machine."""
    report = big_incident()
    walls, cpus, md_times, xlsx_times, sizes = [], [], [], [], {}
    for run in range(RUNS):
        started, cpu_started = time.perf_counter(), time.process_time()
        content = build(report)
        built = time.perf_counter()
        markdown = incident_markdown.render_content(content)
        rendered_md = time.perf_counter()
        workbook = incident_xlsx.render_content(content)
        done, cpu_done = time.perf_counter(), time.process_time()
        walls.append(done - started)
        cpus.append(cpu_done - cpu_started)
        md_times.append(rendered_md - built)
        xlsx_times.append(done - rendered_md)
        sizes = {"md_bytes": len(markdown.encode()), "xlsx_bytes": len(workbook)}
        progress(f"incident run {run + 1}: {done - started:.2f}s wall, {cpu_done - cpu_started:.2f}s cpu")
    return {
        "bench": "reporter_incident_10k",
        "alerts": INCIDENT_ALERTS,
        "best_s": round(min(walls), 3),
        "median_s": round(statistics.median(walls), 3),
        "cpu_best_s": round(min(cpus), 3),
        "md_s": round(min(md_times), 3),
        "xlsx_s": round(min(xlsx_times), 3),
        "target_s": 2.0,
        "ok": min(walls) < 2.0,
        **sizes,
    }


def notifications(i: int, j: int) -> int:
    """Notifications of one occurrence (alerts.notifications): mostly its first and a few repeats and the resolve,
    one in fifty repeated for hours (an alert nobody fixed), as Alertmanager's repeat_interval makes them."""
    return 1 + (i + 3 * j) % 6 + (48 if (i + j) % 50 == 0 else 0)


def fill_database(url: str) -> None:
    """100,000 incidents over 30 days and 200,000 alerts, bulk-loaded with COPY."""
    severities = ("critical", "warning", "info", "error")
    with psycopg.connect(url, autocommit=False) as conn:
        with conn.cursor() as cur:
            columns = (
                "key, rule, group_key, group_labels, title, state, announced, severity, hosts, flapping, alert_count,"
                " firing_count, opened_at, first_alert_at, last_alert_at, acknowledged_at, acknowledged_by,"
                " resolved_at, resolved_by"
            )
            with cur.copy(f"COPY incidents ({columns}) FROM STDIN") as copy:  # our own constant column list
                for i in range(AUDIT_INCIDENTS):
                    opened = T0 + timedelta(seconds=i * 25)
                    state = ("resolved", "resolved", "resolved", "acknowledged", "open")[i % 5]
                    acked = opened + timedelta(minutes=1 + i % 30) if state != "open" else None
                    resolved = opened + timedelta(minutes=10 + i % 200) if state == "resolved" else None
                    host = f"host-{i % 700:03d}"
                    copy.write_row(
                        (
                            f"INC-{i + 1:06d}",
                            "default",
                            f"default:{i}",
                            Jsonb({"host": host}),
                            f"Alert{i % 60} on {host}" if i % 1000 else f'=HYPERLINK("x") | {i}',
                            state,
                            True,
                            severities[i % 4],
                            [host],
                            i % 97 == 0,
                            ALERTS_PER_INCIDENT,
                            0 if state == "resolved" else 1,
                            opened,
                            opened,
                            opened,
                            acked,
                            "alice" if acked else None,
                            resolved,
                            "system" if resolved else None,
                        )
                    )
            ids = {key: id_ for id_, key in cur.execute("SELECT id, key FROM incidents").fetchall()}
            alert_columns = (
                "incident_id, fingerprint, starts_at, status, alertname, severity, host, labels, first_seen_at, "
                "last_seen_at, notifications"
            )
            with cur.copy(f"COPY alerts ({alert_columns}) FROM STDIN") as copy:
                for i in range(AUDIT_INCIDENTS):
                    opened = T0 + timedelta(seconds=i * 25)
                    host = f"host-{i % 700:03d}"
                    for j in range(ALERTS_PER_INCIDENT):
                        alertname = f"Alert{(i + j) % 60}"
                        copy.write_row(
                            (
                                ids[f"INC-{i + 1:06d}"],
                                f"{(i % 5000) * 10 + j:016x}",  # series repeat across incidents: flapping shows up
                                opened + timedelta(seconds=j),
                                "firing",
                                alertname,
                                "critical",
                                host,
                                Jsonb({"alertname": alertname, "instance": host}),
                                opened,
                                opened,
                                notifications(i, j),
                            )
                        )
        # Each incident's timeline as the correlator and the web write it (opened, an entry per alert added and per
        # alert resolved, acknowledged, one in ten by a silence, resolved): the audit asks every incident's timeline
        # whether a silence acknowledged it, and an empty table would answer for free.
        conn.execute(
            """
            INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)
            SELECT i.id, i.opened_at, 'incident_opened', 'correlator', '{}' FROM incidents i
            UNION ALL
            SELECT a.incident_id, a.starts_at, 'alert_added', 'correlator', jsonb_build_object('alertname', a.alertname)
            FROM alerts a
            UNION ALL
            SELECT a.incident_id, i.resolved_at, 'alert_resolved', 'correlator', '{}'
            FROM alerts a JOIN incidents i ON i.id = a.incident_id WHERE i.resolved_at IS NOT NULL
            UNION ALL
            SELECT i.id, i.acknowledged_at, 'incident_acknowledged', i.acknowledged_by,
                   CASE WHEN i.id % 10 = 0 THEN '{"via": "silence"}' ELSE '{}' END::jsonb
            FROM incidents i WHERE i.acknowledged_at IS NOT NULL
            UNION ALL
            SELECT i.id, i.resolved_at, 'incident_resolved', i.resolved_by, '{}' FROM incidents i
            WHERE i.resolved_at IS NOT NULL
            """
        )
        conn.commit()
        conn.execute("ANALYZE")


def child(url: str, kind: str, days: int, out_path: str) -> None:
    """Runs in its own process so VmHWM is the audit's own peak, not the parent's."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn, open(out_path, "wb") as out:
        with audit.reading(conn, T0, T0 + timedelta(days=days)) as report:
            WRITERS[kind](report, out)
    done = time.perf_counter()
    figures: dict[str, object] = {
        "incidents": report.total,
        "total_s": round(done - started, 3),
        "cpu_s": round(time.process_time(), 3),
    }
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    figures["peak_rss_mb"] = round(hwm_kb / 1024, 1)
    figures["bytes"] = Path(out_path).stat().st_size
    print(json.dumps(figures), flush=True)


def run_child(url: str, kind: str, days: int, workdir: Path) -> dict[str, object]:
    out = workdir / f"audit-{days}d.{kind}"
    result = subprocess.run(
        [sys.executable, "-m", "bench.reporter", "--child", url, kind, str(days), str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_audit() -> list[dict[str, object]]:
    workdir = temp_root("vigil-bench-reporter-")
    server = new_postgres(workdir)
    try:
        progress("starting PostgreSQL")
        server.start(fsync=False)
        asyncio.run(migrate(server.url))
        started = time.perf_counter()
        fill_database(server.url)
        progress(f"loaded {AUDIT_INCIDENTS} incidents in {time.perf_counter() - started:.1f}s")
        runs = {(kind, days): run_child(server.url, kind, days, workdir) for kind in WRITERS for days in (1, 30)}
        for (kind, days), figures in runs.items():
            progress(f"audit {kind} of {days} days: {figures}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def figures(kind: str) -> dict[str, object]:
        month, day = runs[(kind, 30)], runs[(kind, 1)]
        growth = round(float(month["peak_rss_mb"]) - float(day["peak_rss_mb"]), 1)  # type: ignore[arg-type]
        return {
            **month,
            "incidents_1d": day["incidents"],
            "peak_rss_1d_mb": day["peak_rss_mb"],
            "rss_over_1d_mb": growth,
        }

    xlsx = figures("xlsx")
    return [
        {
            "bench": "reporter_audit_100k",
            **xlsx,
            "target_s": 30,
            "target_rss_mb": 500,
            "ok": float(xlsx["total_s"]) < 30 and float(xlsx["peak_rss_mb"]) < 500,  # type: ignore[arg-type]
        },
        {"bench": "reporter_audit_100k_md", **figures("md")},
        {"bench": "reporter_audit_100k_json", **figures("json")},
    ]


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    print(json.dumps(bench_incident()), flush=True)
    for figures in bench_audit():
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
