"""The period audit as XLSX, in openpyxl's write-only mode: rows go from the audit's cursors to the sheets' temporary
files as they come, so memory stays flat however many incidents the period holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, BinaryIO

from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.filters import AutoFilter

from shared.reports import xlsx_cells as xc
from shared.reports.audit import AuditReport, Durations

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
        # Retention deleted incidents resolved (and opened) before the horizon: the period is complete from here on.
        ("Retention horizon (UTC)", xc.when(ws, a.retention_horizon) if a.retention_horizon else "none yet"),
        ("Complete from (UTC)", xc.when(ws, a.complete_from)),
        ("Incidents", a.total),
        ("Still open", a.still_open_count),
        ("Maintenance (not in MTTA/MTTR)", a.maintenance_count),
        ("Acknowledged", a.mtta.count),
        ("Acknowledged by a silence", a.acknowledged_by_silence),
        ("Resolved", a.mttr.count),
        *pair("MTTA", a.mtta),
        *pair("MTTR", a.mttr),
    ]
    xc.start_table(ws, [("Measure", 28), ("Value", 22)], len(rows))
    for name, value in rows:
        ws.append([name, value])


def _table(
    ws: WriteOnlyWorksheet,
    rows: Iterable[Any],
    columns: list[tuple[str, str, float, Callable[[WriteOnlyWorksheet, Any], Any] | None]],
) -> None:
    """Stream a table: (row field, header, width, cell maker or None for numbers/booleans/dates as they are)."""
    xc.start_table(ws, [(header, width) for _, header, width, _ in columns], 0)
    pick = attrgetter(*(name for name, _, _, _ in columns))  # every sheet has several columns: a tuple each row
    makers = [maker for _, _, _, maker in columns]
    count = 0
    for row in rows:
        ws.append([value if make is None else make(ws, value) for value, make in zip(pick(row), makers, strict=True)])
        count += 1
    # The row count is known only now; the filter is written after the rows, at the sheet's end, so it is not late.
    xc.layout(ws).auto_filter = AutoFilter(ref=f"A1:{get_column_letter(len(columns))}{count + 1}")


RESPONSE_COLUMNS: list[Column] = [
    ("By", 10),
    ("Severity or rule", 24),
    ("Incidents", 11),
    ("Acknowledged", 13),
    ("TTA median (min)", 16),
    ("TTA p90 (min)", 14),
    ("Resolved", 10),
    ("TTR median (min)", 16),
    ("TTR p90 (min)", 14),
    ("Acknowledge target (min)", 22),
    ("Resolve target (min)", 19),
]


def _target_minutes(value: timedelta | None) -> float | None:
    return None if value is None else minutes(value.total_seconds())


def _response_times(ws: WriteOnlyWorksheet, a: AuditReport) -> None:
    """Per severity, then per rule, in one table (column By says which), so one filter serves both; the severities'
    rows carry their targets."""
    xc.start_table(ws, RESPONSE_COLUMNS, 0)
    count = 0
    for by, rows in (("severity", a.response_by_severity), ("rule", a.response_by_rule)):
        for r in rows:
            name = r.severity if by == "severity" else r.rule
            target = a.targets.for_severity(name) if by == "severity" else None
            ws.append(
                [
                    by,
                    text(ws, name),
                    r.incidents,
                    r.acknowledged,
                    minutes(r.tta_median_s),
                    minutes(r.tta_p90_s),
                    r.resolved,
                    minutes(r.ttr_median_s),
                    minutes(r.ttr_p90_s),
                    _target_minutes(target.acknowledge) if target else None,
                    _target_minutes(target.resolve) if target else None,
                ]
            )
            count += 1
    xc.layout(ws).auto_filter = AutoFilter(ref=f"A1:{get_column_letter(len(RESPONSE_COLUMNS))}{count + 1}")


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
            ("maintenance", "Maintenance", 16, text),
            ("opened_at", "Opened (UTC)", 20, _date),
            ("acknowledged_at", "Acknowledged (UTC)", 20, _date),
            ("acknowledged_by", "Acknowledged by", 16, text),
            ("acknowledged_via", "Acknowledged via", 12, text),
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


MISSED_COLUMNS: list[tuple[str, str, float, Any]] = [
    ("key", "Incident", 13, text),
    ("severity", "Severity", 10, text),
    ("rule", "Rule", 16, text),
    ("target", "Target", 12, None),
    ("target_s", "Within (min)", 12, _minutes),
    ("actual_s", "Took (min)", 12, _minutes),
    # False: not acknowledged (or resolved) at all by the audit's as-of time; Took is how long it has gone without.
    ("reached", "Done", 8, None),
]


def _percent(part: int, whole: int) -> float | None:
    return None if not whole else round(100.0 * part / whole, 2)


def _noise(ws: WriteOnlyWorksheet, a: AuditReport) -> None:
    """The noise funnel (shared.insights.noise.Funnel), maintenance counted apart."""
    f = a.noise_funnel
    rows: list[tuple[str, int]] = [
        ("Notifications", f.notifications),
        ("Repeats and resolves", f.repeats),
        ("Alert occurrences", f.occurrences),
        ("Incidents", f.incidents),
        ("Groups held back by min_alerts", f.held_back),
        ("Held back: occurrences", f.held_back_occurrences),
        ("Held back: notifications", f.held_back_notifications),
        ("Maintenance incidents (left out)", f.maintenance_incidents),
        ("Maintenance groups held back (left out)", f.maintenance_held_back),
        ("Maintenance occurrences (left out)", f.maintenance_occurrences),
        ("Maintenance notifications (left out)", f.maintenance_notifications),
    ]
    xc.start_table(ws, [("Measure", 38), ("Value", 14)], len(rows))
    for name, value in rows:
        ws.append([name, value])


NOISIEST_COLUMNS: list[Column] = [
    ("Rank", 6),
    ("Alert", 32),
    ("Rule", 16),
    ("Notifications", 14),
    ("Occurrences", 12),
    ("Incidents", 11),
    ("Action", 12),
    ("Suggestion", 60),
    ("Because", 60),
]


def _noisiest(ws: WriteOnlyWorksheet, a: AuditReport) -> None:
    xc.start_table(ws, NOISIEST_COLUMNS, len(a.noisiest))
    for rank, n in enumerate(a.noisiest, 1):
        q, s = n.alert, n.suggestion
        ws.append(
            [
                rank,
                text(ws, q.name),
                text(ws, q.rule),
                q.notifications,
                q.occurrences,
                q.incidents,
                s.action,
                text(ws, s.text),
                text(ws, s.evidence),
            ]
        )


QUALITY_COLUMNS: list[Column] = [
    ("By", 8),
    ("Alert or rule", 32),
    ("Rule", 16),
    ("Notifications", 14),
    ("Occurrences", 12),
    ("Incidents", 11),
    ("Held back", 10),
    ("Unacknowledged", 15),
    ("Unacknowledged (%)", 18),
    ("Flapping", 10),
    ("Flapping (%)", 12),
    ("Single-alert incidents", 20),
    ("Clustered incidents", 18),
    ("Hosts", 8),
    ("Not resolved", 12),
    ("Median firing (min)", 18),
]


def _quality(ws: WriteOnlyWorksheet, a: AuditReport) -> None:
    """Per alert name, then per rule, in one table (column By says which), noisiest first in each."""
    xc.start_table(ws, QUALITY_COLUMNS, 0)
    count = 0
    for by, rows in (("alert", a.noise_by_alert), ("rule", a.noise_by_rule)):
        for q in rows:
            ws.append(
                [
                    by,
                    text(ws, q.name),
                    text(ws, q.rule),
                    q.notifications,
                    q.occurrences,
                    q.incidents,
                    q.held_back,
                    q.unacknowledged,
                    _percent(q.unacknowledged, q.incidents),
                    q.flapping,
                    _percent(q.flapping, q.incidents),
                    q.single_alert,
                    q.clustered,
                    q.hosts,
                    q.not_resolved,
                    minutes(q.median_firing_s),
                ]
            )
            count += 1
    xc.layout(ws).auto_filter = AutoFilter(ref=f"A1:{get_column_letter(len(QUALITY_COLUMNS))}{count + 1}")


def write(audit: AuditReport, out: BinaryIO) -> None:
    """Write the audit workbook to `out` (a file or any writable binary stream)."""
    wb = xc.write_only_workbook()
    wb.properties.creator = "Vigil"
    wb.properties.title = f"Incident audit {audit.since.isoformat()} to {audit.until.isoformat()}"
    _summary(wb.create_sheet("Summary"), audit)
    for title, attribute, columns in SHEETS:
        _table(wb.create_sheet(title), getattr(audit, attribute), columns)
    _response_times(wb.create_sheet("Response times"), audit)
    # Every miss, streamed like the other tables (the Markdown lists the first audit.TOP_MISSED).
    _table(wb.create_sheet("Missed targets"), audit.missed, MISSED_COLUMNS)
    _noise(wb.create_sheet("Noise"), audit)
    _noisiest(wb.create_sheet("Noisiest alerts"), audit)
    _quality(wb.create_sheet("Alert quality"), audit)
    xc.save(wb, out, audit.as_of)
