"""Period audit reports over seeded incidents: which incidents a period holds, MTTA/MTTR, offenders, both formats,
and an export of a long period in flat memory."""

from __future__ import annotations

import gc
import io
import json
import tempfile
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import psycopg
import pytest
from markdown_it import MarkdownIt

from shared.reports import audit, audit_json, audit_markdown, audit_xlsx
from tests.reporter.markdown_tables import tables, unescaped_pipes
from tests.seed import T0, insert_alert, insert_incident

HOSTILE = "=cmd|' /C calc'!A0\n| <b>x</b>"
SINCE, UNTIL = T0, T0 + timedelta(days=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def seed_period(conn: psycopg.AsyncConnection[Any]) -> None:
    one = await insert_incident(
        conn, number=1, state="resolved", hosts=("web-1",), acknowledged_at=at(5), resolved_at=at(60)
    )
    for start in (0, 10, 20):  # one alert series firing three times: flapping
        await insert_alert(conn, one, alertname="HostDown", host="web-1", starts_at=at(start))
    two = await insert_incident(
        conn,
        number=2,
        state="resolved",
        severity="warning",
        hosts=("web-2", "web-1"),
        opened_at=at(60),
        acknowledged_at=at(75),
        resolved_at=at(90),
        flapping=True,
    )
    await insert_alert(conn, two, alertname="HighLatency", host="web-2", severity="warning", starts_at=at(60))
    await insert_alert(conn, two, alertname="HighLatency", host="web-1", severity="warning", starts_at=at(61))
    three = await insert_incident(
        conn, number=3, state="acknowledged", hosts=("db-1",), opened_at=at(120), acknowledged_at=at(130)
    )
    await insert_alert(conn, three, alertname="PgDown", host="db-1", starts_at=at(120))
    await insert_alert(conn, three, alertname="PgDown", host="db-1", starts_at=at(121), labels={"db": "main"})
    four = await insert_incident(conn, number=4, title=HOSTILE, severity="warning", hosts=("web-1",), opened_at=at(180))
    await insert_alert(conn, four, alertname="Disk|Full", host="web-1", severity="warning", starts_at=at(180))
    # Outside the period (before since, and exactly at until), and one never announced: none of them count.
    await insert_incident(conn, number=5, state="resolved", opened_at=at(-60), resolved_at=at(-30))
    await insert_incident(conn, number=6, opened_at=UNTIL)
    hidden = await insert_incident(conn, number=7, opened_at=at(240))
    await conn.execute("UPDATE incidents SET announced = false WHERE id = %s", (hidden,))


async def test_period_holds_the_incidents_opened_in_it_with_their_figures(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.incidents.column("key") == ["INC-000001", "INC-000002", "INC-000003", "INC-000004"]
        assert report.total == 4 and report.still_open_count == 2
        assert report.mtta == audit.Durations(count=3, mean_s=600.0, p90_s=840.0)
        assert report.mttr == audit.Durations(count=2, mean_s=2700.0, p90_s=3420.0)
        assert report.by_severity.rows() == [("critical", 2, 1), ("warning", 2, 1)]
        assert report.by_host.rows() == [("web-1", 3, 5), ("db-1", 1, 2), ("web-2", 1, 1)]
        assert report.noisy.rows()[:2] == [("HostDown", "web-1", 3, 1), ("PgDown", "db-1", 2, 1)]
        assert report.by_alertname.rows()[0] == ("HostDown", 3, 1, 1)
        rows = report.flapping.rows()
        flapping = {(alertname, host): (n, marked) for alertname, host, _, n, _, marked in rows}
        assert flapping == {
            ("HostDown", "web-1"): (3, False),
            ("HighLatency", "web-2"): (1, True),
            ("HighLatency", "web-1"): (1, True),
        }
        assert report.still_open.column("key") == ["INC-000003", "INC-000004"]
        # Float seconds from microseconds: equal to the microsecond, not always to the last bit.
        assert report.still_open.column("age_s") == pytest.approx(
            [(report.as_of - at(120)).total_seconds(), (report.as_of - at(180)).total_seconds()], abs=1e-6
        )
        assert report.incidents.column("opened_at")[0] == T0


async def test_maintenance_incidents_are_listed_but_left_out_of_mtta_and_mttr(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    # Planned work: acknowledged after 3 hours and resolved after 5, which would swamp the real figures.
    planned = await insert_incident(
        conn,
        number=8,
        state="resolved",
        hosts=("db-9",),
        opened_at=at(200),
        acknowledged_at=at(380),
        resolved_at=at(500),
    )
    await conn.execute("UPDATE incidents SET maintenance = 'db-upgrade' WHERE id = %s", (planned,))
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.total == 5 and report.maintenance_count == 1
        # The same figures as without it (test_period_holds_the_incidents_opened_in_it_with_their_figures).
        assert report.mtta == audit.Durations(count=3, mean_s=600.0, p90_s=840.0)
        assert report.mttr == audit.Durations(count=2, mean_s=2700.0, p90_s=3420.0)
        rows = {r.key: r for r in report.incidents}
        assert rows["INC-000008"].maintenance == "db-upgrade" and rows["INC-000008"].tta_s == 3 * 3600
        assert rows["INC-000001"].maintenance is None
        text = audit_markdown.render(report)
        out = io.BytesIO()
        audit_xlsx.write(report, out)
    summary, *_, incidents = tables(MarkdownIt("commonmark").enable("table").parse(text))
    assert dict(summary[1:])["Maintenance (not in MTTA/MTTR)"] == "1"
    header, *body = incidents
    assert [dict(zip(header, row, strict=True))["Maintenance"] for row in body] == ["", "", "", "", "db-upgrade"]
    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert {row[0].value: row[1].value for row in wb["Summary"].iter_rows(min_row=2)}[
        "Maintenance (not in MTTA/MTTR)"
    ] == 1


async def test_empty_period_is_a_valid_report(reader: psycopg.Connection[Any]) -> None:
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.total == 0 and report.mtta == audit.Durations(0, None, None)
        assert "No incidents in this period." in audit_markdown.render(report)
        out = io.BytesIO()
        audit_xlsx.write(report, out)
    assert openpyxl.load_workbook(io.BytesIO(out.getvalue()))["Incidents"].max_row == 1


async def test_range_must_be_ordered_and_zoned(reader: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="after"), audit.reading(reader, UNTIL, SINCE):
        pass
    naive = datetime(2026, 11, 1), datetime(2026, 11, 2)
    with pytest.raises(ValueError, match="time zone"), audit.reading(reader, *naive):
        pass


def test_ready_made_periods_end_at_as_of() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert audit.period_range("24h", now) == (now - timedelta(hours=24), now)
    assert audit.period_range("7d", now) == (now - timedelta(days=7), now)
    assert audit.period_range("30d", now) == (now - timedelta(days=30), now)


async def test_audit_markdown_keeps_tables_intact(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    with audit.reading(reader, SINCE, UNTIL) as report:
        text = audit_markdown.render(report)
    header_pipes = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header_pipes = None
            continue
        header_pipes = header_pipes or unescaped_pipes(line)
        assert unescaped_pipes(line) == header_pipes, line
    parser = MarkdownIt("commonmark").enable("table")
    found = tables(parser.parse(text))
    summary, *_, incidents = found
    assert dict(summary[1:])["MTTA (mean)"] == "10m 00s"
    assert dict(summary[1:])["MTTR (p90)"] == "57m 00s"
    assert [row[1] for row in incidents[1:]][3] == HOSTILE.replace("\n", " ")
    assert "<b>" not in parser.render(text)


async def test_audit_xlsx_has_typed_rows_and_no_formulas(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    out = io.BytesIO()
    with audit.reading(reader, SINCE, UNTIL) as report:
        audit_xlsx.write(report, out)
    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert wb.sheetnames == [
        "Summary",
        "Incidents",
        "By severity",
        "By alert",
        "By host",
        "Noisy alerts",
        "Flapping alerts",
        "Still open",
        "Response times",
        "Missed targets",
        "Noise",
        "Noisiest alerts",
        "Alert quality",
    ]
    incidents = list(wb["Incidents"].iter_rows(values_only=False))
    headers = [c.value for c in incidents[0]]
    first = dict(zip(headers, incidents[1], strict=True))
    assert first["Opened (UTC)"].is_date and first["Opened (UTC)"].value == datetime(2026, 11, 1, 3, 0)
    assert first["TTA (min)"].value == 5 and first["TTR (min)"].value == 60
    assert first["Alerts"].value == 3
    hostile = dict(zip(headers, incidents[4], strict=True))["Title"]
    assert hostile.value == HOSTILE and hostile.data_type == "s" and hostile.quotePrefix
    summary = {row[0].value: row[1].value for row in wb["Summary"].iter_rows(min_row=2)}
    assert summary["Incidents"] == 4 and summary["MTTA p90 (min)"] == 14
    # The filter spans the rows written, counted as they streamed by.
    assert wb["Incidents"].auto_filter.ref == "A1:Q5" and wb["By severity"].auto_filter.ref == "A1:C3"
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2"
        for row in ws.iter_rows():
            assert all(c.data_type != "f" for c in row), ws.title


async def test_audit_json_holds_the_same_figures_and_text_as_stored(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    with audit.reading(reader, SINCE, UNTIL) as report:
        document = json.loads(audit_json.render(report))
        keys = report.incidents.column("key")
    assert list(document) == [
        "schema_version",
        "since",
        "until",
        "as_of",
        "retention_horizon",
        "complete_from",
        "complete",
        "summary",
        "by_severity",
        "response_times",
        "noise",
        "by_alertname",
        "by_host",
        "noisy",
        "flapping",
        "still_open",
        "incidents",
    ]
    assert [i["key"] for i in document["incidents"]] == keys
    assert document["summary"]["mtta"] == {"count": 3, "mean_s": 600.0, "p90_s": 840.0}
    assert document["by_severity"] == [
        {"severity": "critical", "incidents": 2, "open": 1},
        {"severity": "warning", "incidents": 2, "open": 1},
    ]
    first, *_, hostile = document["incidents"]
    assert first["opened_at"] == "2026-11-01T03:00:00Z" and first["tta_s"] == 300.0
    assert hostile["title"] == HOSTILE  # JSON carries text as it is: escaping is the reader's
    assert document["response_times"]["targets"] == {} and document["response_times"]["missed"] == []
    assert document["noise"]["funnel"]["incidents"] == 4 and document["noise"]["funnel"]["held_back"] == 1


LONG_PERIOD_INCIDENTS = 4_000


async def seed_long_period(conn: psycopg.AsyncConnection[Any]) -> None:
    """One incident a minute from T0, two alerts each, hosts and alert series repeating: bulk-loaded with COPY."""
    columns = "key, rule, group_key, title, state, announced, severity, hosts, opened_at, first_alert_at, last_alert_at"
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY incidents ({columns}) FROM STDIN") as copy:  # our own constant column list
            for i in range(LONG_PERIOD_INCIDENTS):
                opened = at(i)
                title = f"HostDown on host-{i % 50} | incident {i} with a title of a realistic length"
                row = (f"INC-{i + 1:06d}", "default", f"default:{i}", title, "open", True, "critical")
                await copy.write_row((*row, [f"host-{i % 50}"], opened, opened, opened))
        await cur.execute(
            """INSERT INTO alerts (incident_id, fingerprint, starts_at, status, alertname, severity, host, labels,
                   first_seen_at, last_seen_at)
               SELECT i.id, md5((i.id % 500)::text || n), i.opened_at, 'firing', 'HostDown' || n, 'critical',
                      i.hosts[1], '{}', i.opened_at, i.opened_at
               FROM incidents i CROSS JOIN generate_series(1, 2) AS n"""
        )


def export_peak(conn: psycopg.Connection[Any], minutes: int, fmt: str) -> int:
    """Peak bytes allocated by Python while exporting the first `minutes` of the long period to a file."""
    gc.collect()  # garbage of an earlier export would blur the figure
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    with tempfile.TemporaryFile() as out, audit.reading(conn, T0, at(minutes)) as report:
        {"md": audit_markdown.write, "xlsx": audit_xlsx.write, "json": audit_json.write}[fmt](report, out)
        assert out.tell() > 0
    _, peak = tracemalloc.get_traced_memory()
    return peak - base


@pytest.mark.parametrize("fmt", ["md", "xlsx", "json"])
async def test_exporting_a_long_period_takes_no_more_memory_than_a_short_one(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any], fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_long_period(conn)
    # Small chunks keep the test quick (tracemalloc is slow); both periods span several.
    monkeypatch.setattr(audit, "CHUNK_ROWS", 500)
    short, long = LONG_PERIOD_INCIDENTS // 4, LONG_PERIOD_INCIDENTS
    tracemalloc.start()
    try:
        export_peak(reader, short, fmt)  # first use: templates compiled, modules warmed up
        short_peak = export_peak(reader, short, fmt)
        long_peak = export_peak(reader, long, fmt)
    finally:
        tracemalloc.stop()
    # Four times the incidents, the same memory (give or take the garbage collector's timing, some 0.5 MiB): rows
    # stream from the cursor to the file a chunk at a time. Holding the 3,000 more incidents would take several MiB.
    assert long_peak - short_peak < 1024 * 1024, (short_peak, long_peak)
