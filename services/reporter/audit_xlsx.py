"""The period audit as XLSX, in openpyxl's write-only mode: rows stream to disk, memory stays flat however many
incidents the period holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

import polars as pl
from openpyxl import Workbook
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from services.reporter import xlsx_cells as xc
from services.reporter.audit import AuditReport, Durations

Column = tuple[str, float]


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60.0, 4)


def _summary(ws: WriteOnlyWorksheet, a: AuditReport) -> None:
    def pair(name: str, d: Durations) -> list[tuple[str, Any]]:
        return [(f"{name} mean (min)", minutes(d.mean_s)), (f"{name} p90 (min)", minutes(d.p90_s))]

    rows: list[tuple[str, Any]] = [
        ("Since (UTC)", xc.when(ws, a.since)),
        ("Until (UTC, excluded)", xc.when(ws, a.until)),
        ("As of (UTC)", xc.when(ws, a.as_of)),
        ("Incidents", a.total),
        ("Still open", a.still_open.height),
        ("Acknowledged", a.mtta.count),
        ("Resolved", a.mttr.count),
        *pair("MTTA", a.mtta),
        *pair("MTTR", a.mttr),
    ]
    xc.start_table(ws, [("Measure", 28), ("Value", 22)], len(rows))
    for name, value in rows:
        ws.append([name, value])


def _table(
    ws: WriteOnlyWorksheet,
    frame: pl.DataFrame,
    columns: list[tuple[str, str, float, Callable[[WriteOnlyWorksheet, Any], Any] | None]],
) -> None:
    """Stream a frame: (frame column, header, width, cell maker or None for numbers/booleans/dates as they are)."""
    xc.start_table(ws, [(header, width) for _, header, width, _ in columns], frame.height)
    names = [name for name, _, _, _ in columns]
    makers = [maker for _, _, _, maker in columns]
    for row in _rows(frame.select(names)):
        ws.append([value if maker is None else maker(ws, value) for value, maker in zip(row, makers, strict=True)])


def _rows(frame: pl.DataFrame, chunk: int = 20_000) -> Iterator[tuple[Any, ...]]:
    # Slices keep the Python objects of only one chunk alive at a time.
    for offset in range(0, frame.height, chunk):
        yield from frame.slice(offset, chunk).iter_rows()


def _date(ws: WriteOnlyWorksheet, value: datetime | None) -> Any:
    return xc.naive_utc(value)


def _minutes(ws: WriteOnlyWorksheet, value: float | None) -> float | None:
    return minutes(value)


text = xc.text

SHEETS: list[tuple[str, str, list[tuple[str, str, float, Any]]]] = [
    (
        "Incidents",
        "incidents",
        [
            ("key", "Incident", 13, text),
            ("title", "Title", 50, text),
            ("state", "State", 13, text),
            ("severity", "Severity", 10, text),
            ("rule", "Rule", 16, text),
            ("hosts", "Hosts", 30, text),
            ("alert_count", "Alerts", 8, None),
            ("flapping", "Flapping", 9, None),
            ("opened_at", "Opened (UTC)", 20, _date),
            ("acknowledged_at", "Acknowledged (UTC)", 20, _date),
            ("acknowledged_by", "Acknowledged by", 16, text),
            ("resolved_at", "Resolved (UTC)", 20, _date),
            ("resolved_by", "Resolved by", 16, text),
            ("tta_s", "TTA (min)", 11, _minutes),
            ("ttr_s", "TTR (min)", 11, _minutes),
        ],
    ),
    (
        "By severity",
        "by_severity",
        [("severity", "Severity", 12, text), ("incidents", "Incidents", 11, None), ("open", "Still open", 11, None)],
    ),
    (
        "By alert",
        "by_alertname",
        [
            ("alertname", "Alert", 32, text),
            ("alerts", "Alerts", 10, None),
            ("incidents", "Incidents", 11, None),
            ("hosts", "Hosts", 8, None),
        ],
    ),
    (
        "By host",
        "by_host",
        [("host", "Host", 30, text), ("incidents", "Incidents", 11, None), ("alerts", "Alerts", 10, None)],
    ),
    (
        "Noisy alerts",
        "noisy",
        [
            ("alertname", "Alert", 32, text),
            ("host", "Host", 24, text),
            ("alerts", "Alerts", 10, None),
            ("incidents", "Incidents", 11, None),
        ],
    ),
    (
        "Flapping alerts",
        "flapping",
        [
            ("alertname", "Alert", 32, text),
            ("host", "Host", 24, text),
            ("fingerprint", "Fingerprint", 18, text),
            ("occurrences", "Occurrences", 12, None),
            ("incidents", "Incidents", 11, None),
            ("marked_flapping", "Marked flapping", 15, None),
        ],
    ),
    (
        "Still open",
        "still_open",
        [
            ("key", "Incident", 13, text),
            ("title", "Title", 50, text),
            ("state", "State", 13, text),
            ("severity", "Severity", 10, text),
            ("hosts", "Hosts", 30, text),
            ("opened_at", "Opened (UTC)", 20, _date),
            ("acknowledged_at", "Acknowledged (UTC)", 20, _date),
            ("age_s", "Open for (min)", 14, _minutes),
        ],
    ),
]


def write(audit: AuditReport, out: BinaryIO) -> None:
    """Write the audit workbook to `out` (a file or any writable binary stream)."""
    wb = Workbook(write_only=True)
    wb.properties.creator = "Vigil"
    wb.properties.title = f"Incident audit {audit.since.isoformat()} to {audit.until.isoformat()}"
    _summary(wb.create_sheet("Summary"), audit)
    for title, attribute, columns in SHEETS:
        _table(wb.create_sheet(title), getattr(audit, attribute), columns)
    xc.save(wb, out, audit.as_of)
