"""Incident reports as XLSX: read back with openpyxl (sheets, real types, no formulas from alert data), and opened by
headless LibreOffice as a real consumer would."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from psycopg.rows import dict_row

from shared.reports import incident_report, incident_xlsx
from shared.reports.incident_report import IncidentReport
from tests.reporter.report_seed import HOSTILE_TITLE, KEY, seed_incident

SHEETS = ["Summary", "Alerts", "Timeline", "Metrics", "Logs", "Security"]


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


async def seeded(conn: psycopg.AsyncConnection[Any], *, hostile: bool) -> IncidentReport:
    await seed_incident(conn, hostile=hostile)
    report = await incident_report.load(conn, KEY)
    assert report is not None
    return report


def column(ws: Any, header: str) -> list[Any]:
    headers = [c.value for c in ws[1]]
    index = headers.index(header)
    return [row[index] for row in ws.iter_rows(min_row=2)]


async def test_sheets_hold_real_types_with_frozen_filtered_headers(conn: psycopg.AsyncConnection[Any]) -> None:
    data = incident_xlsx.render(await seeded(conn, hostile=False))
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames[: len(SHEETS)] == SHEETS

    summary = {row[0].value: row[1] for row in wb["Summary"].iter_rows(min_row=2)}
    assert summary["Key"].value == KEY
    assert summary["Opened (UTC)"].value == datetime(2026, 11, 1, 3, 0)
    assert summary["Opened (UTC)"].is_date
    assert summary["Resolved (UTC)"].value == datetime(2026, 11, 1, 3, 42)
    assert summary["Duration (min)"].value == 42 and summary["Duration (min)"].data_type == "n"
    assert summary["Time to acknowledge (min)"].value == 7
    assert summary["Alerts"].value == 3
    assert summary["Flapping"].value is False

    alerts = wb["Alerts"]
    assert [c.value for c in column(alerts, "Alert")] == ["HostDown", "HighLatency", "HighLatency"]
    started = column(alerts, "Started (UTC)")
    assert all(c.is_date for c in started) and started[1].value == datetime(2026, 11, 1, 3, 2)
    assert [c.value for c in column(alerts, "Duration (min)")] == [40, 39, None]

    metrics = wb["Metrics"]
    assert [c.value for c in metrics[1]] == ["Series", "Unit", "Time (UTC)", "Value", "Step min", "Step max"]
    assert [c.value for c in column(metrics, "Step max")] == [20 + m * 1.5 for m in range(-10, 31, 5)] + [None] * 4
    assert metrics.max_row == 1 + 9 + 4  # cpu points + memory points
    assert all(c.is_date for c in column(metrics, "Time (UTC)"))
    assert all(isinstance(c.value, float | int) for c in column(metrics, "Value"))

    for name in wb.sheetnames:
        ws = wb[name]
        assert ws.freeze_panes == "A2", name
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:"), name
        assert ws.column_dimensions["A"].width > 8, name
        assert all(c.font.b for c in ws[1]), name

    # openpyxl drops charts when it reads a file, so look at the package: one native line chart per series.
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        charts = sorted(n for n in package.namelist() if n.startswith("xl/charts/chart"))
        assert len(charts) == 2
        for chart in charts:
            xml = package.read(chart).decode()
            assert "<lineChart>" in xml and "<catAx>" in xml and "<valAx>" in xml
            assert "'Metrics'!$D$" in xml and "'Metrics'!$C$" in xml
        # The cpu series has its steps' extremes: their lines beside the value's.
        assert sum("'Metrics'!$F$" in package.read(chart).decode() for chart in charts) == 1


async def test_same_report_same_bytes(conn: psycopg.AsyncConnection[Any]) -> None:
    report = await seeded(conn, hostile=True)
    assert incident_xlsx.render(report) == incident_xlsx.render(report)


async def test_an_incident_workbook_is_built_in_memory(
    conn: psycopg.AsyncConnection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No temporary file per sheet (openpyxl's write-only default): reports are re-rendered all through a storm.
    With the temporary directory gone, a file-backed sheet could not be written at all."""
    report = await seeded(conn, hostile=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    book = openpyxl.load_workbook(io.BytesIO(incident_xlsx.render(report)))
    assert len(book["Alerts"]["A"]) == 1 + len(report.alerts)


async def test_alert_data_is_text_never_a_formula(conn: psycopg.AsyncConnection[Any]) -> None:
    report = await seeded(conn, hostile=True)
    data = incident_xlsx.render(report)

    with zipfile.ZipFile(io.BytesIO(data)) as package:
        for name in package.namelist():
            if name.startswith("xl/worksheets/"):
                assert "<f>" not in package.read(name).decode() and "<f " not in package.read(name).decode(), name

    wb = openpyxl.load_workbook(io.BytesIO(data))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", (ws.title, c.coordinate, c.value)
    summaries = column(wb["Alerts"], "Summary")
    assert [c.value for c in summaries] == ['=HYPERLINK("http://evil","click")', "+1 p99 latency above 2s", "-2+3"]
    assert all(c.data_type == "s" and c.quotePrefix for c in summaries)
    summary = {row[0].value: row[1].value for row in wb["Summary"].iter_rows(min_row=2)}
    assert summary["Title"] == HOSTILE_TITLE
    labels = column(wb["Alerts"], "Labels")
    assert "path=@SUM(1+1)" in labels[2].value


def test_control_characters_and_huge_text_do_not_break_the_workbook() -> None:
    from shared.reports.xlsx_cells import MAX_CELL_TEXT, clean_text

    assert clean_text("a\x00b\x1fc\td\ne") == "a\ufffdb\ufffdc\td\ne"
    assert len(clean_text("x" * 100_000)) == MAX_CELL_TEXT


def soffice() -> str:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        pytest.fail("LibreOffice is not installed: apt-get install libreoffice-calc-nogui (needed by this test)")
    return found


def convert(source: Path, target: str, outdir: Path) -> subprocess.CompletedProcess[str]:
    profile = outdir / "profile"
    return subprocess.run(
        [
            soffice(),
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--norestore",
            "--convert-to",
            target,
            "--outdir",
            str(outdir),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_libreoffice_opens_the_workbook_as_a_consumer_would(
    conn: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    source = tmp_path / "report.xlsx"
    source.write_bytes(incident_xlsx.render(await seeded(conn, hostile=True)))

    pdf = convert(source, "pdf", tmp_path)
    assert pdf.returncode == 0, pdf.stderr
    assert (tmp_path / "report.pdf").stat().st_size > 1000, pdf.stdout + pdf.stderr

    # Every sheet as CSV (filter option 12 = -1): what LibreOffice shows is the text from the alert, not a result.
    sheets = convert(source, "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1", tmp_path)
    assert sheets.returncode == 0, sheets.stderr
    with (tmp_path / "report-Alerts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Summary"] for r in rows] == ['=HYPERLINK("http://evil","click")', "+1 p99 latency above 2s", "-2+3"]
    assert rows[0]["Started (UTC)"] == "2026-11-01 03:00:00"
    assert rows[0]["Duration (min)"] == "40"
    with (tmp_path / "report-Metrics.csv").open(newline="") as handle:
        metrics = list(csv.DictReader(handle))
    assert len(metrics) == 13 and metrics[0]["Time (UTC)"] == "2026-11-01 02:50:00"
