"""Period audit reports over seeded incidents: which incidents a period holds, MTTA/MTTR, offenders, both formats."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import psycopg
import pytest
from markdown_it import MarkdownIt
from psycopg.rows import dict_row

from services.reporter import audit, audit_markdown, audit_xlsx
from tests.seed import T0, insert_alert, insert_incident
from tests.test_report_markdown import tables, unescaped_pipes

HOSTILE = "=cmd|' /C calc'!A0\n| <b>x</b>"
SINCE, UNTIL = T0, T0 + timedelta(days=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


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


async def test_period_holds_the_incidents_opened_in_it_with_their_figures(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_period(conn)
    report = await audit.load(conn, SINCE, UNTIL)

    assert report.incidents["key"].to_list() == ["INC-000001", "INC-000002", "INC-000003", "INC-000004"]
    assert report.mtta == audit.Durations(count=3, mean_s=600.0, p90_s=840.0)
    assert report.mttr == audit.Durations(count=2, mean_s=2700.0, p90_s=3420.0)
    assert report.by_severity.rows() == [("critical", 2, 1), ("warning", 2, 1)]
    assert report.by_host.rows() == [("web-1", 3, 5), ("db-1", 1, 2), ("web-2", 1, 1)]
    assert report.noisy.rows()[:2] == [("HostDown", "web-1", 3, 1), ("PgDown", "db-1", 2, 1)]
    assert report.by_alertname.row(0) == ("HostDown", 3, 1, 1)
    rows = report.flapping.to_dicts()
    flapping = {(r["alertname"], r["host"]): (r["occurrences"], r["marked_flapping"]) for r in rows}
    assert flapping == {
        ("HostDown", "web-1"): (3, False),
        ("HighLatency", "web-2"): (1, True),
        ("HighLatency", "web-1"): (1, True),
    }
    assert report.still_open["key"].to_list() == ["INC-000003", "INC-000004"]
    # Float division of microseconds: equal to the microsecond, not always to the last bit.
    assert report.still_open["age_s"].to_list() == pytest.approx(
        [(report.as_of - at(120)).total_seconds(), (report.as_of - at(180)).total_seconds()], abs=1e-6
    )
    assert report.incidents["opened_at"][0] == T0


async def test_empty_period_is_a_valid_report(conn: psycopg.AsyncConnection[Any]) -> None:
    report = await audit.load(conn, SINCE, UNTIL)
    assert report.total == 0 and report.mtta == audit.Durations(0, None, None)
    assert "No incidents in this period." in audit_markdown.render(report)
    out = io.BytesIO()
    audit_xlsx.write(report, out)
    assert openpyxl.load_workbook(io.BytesIO(out.getvalue()))["Incidents"].max_row == 1


async def test_range_must_be_ordered_and_zoned(conn: psycopg.AsyncConnection[Any]) -> None:
    with pytest.raises(ValueError, match="after"):
        await audit.load(conn, UNTIL, SINCE)
    with pytest.raises(ValueError, match="time zone"):
        await audit.load(conn, datetime(2026, 11, 1), datetime(2026, 11, 2))


def test_ready_made_periods_end_at_as_of() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert audit.period_range("24h", now) == (now - timedelta(hours=24), now)
    assert audit.period_range("7d", now) == (now - timedelta(days=7), now)
    assert audit.period_range("30d", now) == (now - timedelta(days=30), now)


async def test_audit_markdown_keeps_tables_intact(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_period(conn)
    text = audit_markdown.render(await audit.load(conn, SINCE, UNTIL))
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


async def test_audit_xlsx_has_typed_rows_and_no_formulas(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_period(conn)
    out = io.BytesIO()
    audit_xlsx.write(await audit.load(conn, SINCE, UNTIL), out)
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
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2"
        for row in ws.iter_rows():
            assert all(c.data_type != "f" for c in row), ws.title
