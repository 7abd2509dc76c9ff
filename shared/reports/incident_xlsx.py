"""The incident report as an XLSX workbook (openpyxl, write-only mode: rows stream straight into the file).

Sheets: Summary, Alerts, Timeline, Metrics (points plus one native line chart per series), Logs, Security, then
Series, Error bursts, Recommendations, Links, Similar incidents. Dates are Excel dates in UTC, numbers are numbers,
every table has a frozen header row and an autofilter, and text from alerts is never a formula.
"""

from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.chart import Reference
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from shared.reports import xlsx_cells as xc
from shared.reports.incident_content import IncidentContent, build
from shared.reports.incident_report import IncidentReport

SECONDS_PER_MINUTE = 60.0


def minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / SECONDS_PER_MINUTE, 4)


def _summary(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    s = c.summary
    rows: list[tuple[str, object]] = [
        ("Key", xc.text(ws, s.key)),
        ("Title", xc.text(ws, s.title)),
        ("State", xc.text(ws, s.state)),
        ("Severity", xc.text(ws, s.severity)),
        ("Rule", xc.text(ws, s.rule)),
        ("Hosts", xc.text(ws, ", ".join(s.hosts))),
        ("Group labels", xc.text(ws, ", ".join(f"{k}={v}" for k, v in s.group_labels.items()))),
        ("Opened (UTC)", xc.when(ws, s.opened_at)),
        ("First alert (UTC)", xc.when(ws, s.first_alert_at)),
        ("Last alert (UTC)", xc.when(ws, s.last_alert_at)),
        ("Acknowledged (UTC)", xc.when(ws, s.acknowledged_at)),
        ("Acknowledged by", xc.text(ws, s.acknowledged_by)),
        ("Resolved (UTC)", xc.when(ws, s.resolved_at)),
        ("Resolved by", xc.text(ws, s.resolved_by)),
        ("Duration (min)", minutes(s.duration_seconds)),
        ("Time to acknowledge (min)", minutes(s.time_to_acknowledge_seconds)),
        ("Time to resolve (min)", minutes(s.time_to_resolve_seconds)),
        ("Alerts", s.alert_count),
        ("Firing", s.firing_count),
        ("Flapping", s.flapping),
        ("Maintenance", xc.text(ws, s.maintenance)),
        ("Revision", s.revision),
        ("Data as of (UTC)", xc.when(ws, s.as_of)),
    ]
    if c.enrichment is not None:
        e = c.enrichment
        rows += [
            ("Enrichment complete", e.complete),
            ("Enrichment missing", xc.text(ws, "; ".join(e.missing))),
            ("Enrichment window start (UTC)", xc.when(ws, e.window_start)),
            ("Enrichment window end (UTC)", xc.when(ws, e.window_end)),
            ("Log lines matched", c.logs.lines_total),
        ]
    xc.start_table(ws, [("Field", 30), ("Value", 60)], len(rows))
    for name, value in rows:
        ws.append([name, value])


def _alerts(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    columns = [
        ("Alert", 28),
        ("Severity", 11),
        ("Host", 20),
        ("Status", 10),
        ("Started (UTC)", 20),
        ("Ended (UTC)", 20),
        ("Duration (min)", 14),
        ("Summary", 50),
        ("Labels", 60),
        ("Fingerprint", 18),
        ("Source URL", 40),
        ("Stored adjusted", 50),
    ]
    xc.start_table(ws, columns, len(c.alerts))
    for a in c.alerts:
        ws.append(
            [
                xc.text(ws, a.alertname),
                xc.text(ws, a.severity),
                xc.text(ws, a.host),
                xc.text(ws, a.status),
                xc.when(ws, a.starts_at),
                xc.when(ws, a.ends_at),
                minutes(a.duration_seconds),
                xc.text(ws, a.summary),
                xc.text(ws, ", ".join(f"{k}={v}" for k, v in a.labels.items())),
                xc.text(ws, a.fingerprint),
                xc.text(ws, a.generator_url),
                xc.text(ws, "; ".join(a.adjusted)),
            ]
        )


def _timeline(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    xc.start_table(ws, [("Time (UTC)", 20), ("Source", 12), ("Event", 22), ("By", 16), ("Detail", 80)], len(c.timeline))
    for t in c.timeline:
        ws.append([xc.when(ws, t.at), t.source, xc.text(ws, t.kind), xc.text(ws, t.actor), xc.text(ws, t.text)])


def _metrics(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    """Long format, one block of rows per series, so each chart reads one contiguous range."""
    total = sum(len(m.points) for m in c.metrics)
    columns = [("Series", 24), ("Unit", 10), ("Time (UTC)", 20), ("Value", 14), ("Step min", 14), ("Step max", 14)]
    xc.start_table(ws, columns, total)
    row = 2
    for index, m in enumerate(c.metrics):
        first = row
        bands = {at: (low, high) for at, low, high in m.bands}
        for at, value in m.points:
            low, high = bands.get(at, (None, None))
            ws.append([xc.text(ws, m.name), xc.text(ws, m.unit), xc.when(ws, at), value, low, high])
            row += 1
        if row > first:
            chart = xc.line_chart(ws, m.name, 3, 4, first, row - 1, m.unit)
            if bands:
                # A spike shorter than a step is in no value; the step maximum line shows it.
                chart.add_data(Reference(ws, min_col=5, max_col=6, min_row=first, max_row=row - 1))
            xc.layout(ws).add_chart(chart, f"F{2 + index * 16}")


def _series(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    columns = [
        ("Series", 24),
        ("Unit", 10),
        ("Min", 12),
        ("Avg", 12),
        ("Max", 12),
        ("P95", 12),
        ("Peak", 12),
        ("Peak at (UTC)", 20),
        ("Baseline", 12),
        ("Left baseline at (UTC)", 22),
        ("Query", 60),
        ("Labels", 40),
    ]
    xc.start_table(ws, columns, len(c.metrics))
    for m in c.metrics:
        ws.append(
            [
                xc.text(ws, m.name),
                xc.text(ws, m.unit),
                m.min,
                m.avg,
                m.max,
                m.p95,
                m.peak,
                xc.when(ws, m.peak_at),
                m.baseline,
                xc.when(ws, m.deviation_at),
                xc.text(ws, m.query),
                xc.text(ws, ", ".join(f"{k}={v}" for k, v in sorted(m.labels.items()))),
            ]
        )


def _logs(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    xc.start_table(ws, [("Time (UTC)", 20), ("Labels", 40), ("Line", 120)], len(c.logs.excerpt))
    for line in c.logs.excerpt:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(line.labels.items()))
        ws.append([xc.when(ws, line.at), xc.text(ws, labels), xc.text(ws, line.line)])


def _bursts(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    xc.start_table(ws, [("Minute (UTC)", 20), ("Errors", 10)], len(c.logs.error_bursts))
    for burst in c.logs.error_bursts:
        ws.append([xc.when(ws, burst.minute), burst.errors])


def _security(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    columns = [("Time (UTC)", 20), ("Action", 10), ("IP", 18), ("Jail", 14), ("Host", 18), ("Line", 100)]
    xc.start_table(ws, columns, len(c.security_events))
    for e in c.security_events:
        ws.append(
            [
                xc.when(ws, e.at),
                xc.text(ws, e.action),
                xc.text(ws, e.ip),
                xc.text(ws, e.jail),
                xc.text(ws, e.host),
                xc.text(ws, e.line),
            ]
        )


def _recommendations(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    columns = [("Alert", 28), ("Alerts", 8), ("Summary", 50), ("Description", 70), ("Actions", 50), ("Runbook", 40)]
    xc.start_table(ws, columns, len(c.recommendations))
    for r in c.recommendations:
        ws.append(
            [
                xc.text(ws, r.alertname),
                r.alerts,
                xc.text(ws, "\n".join(r.summaries)),
                xc.text(ws, "\n\n".join(r.descriptions)),
                xc.text(ws, "\n".join(r.actions)),
                xc.text(ws, "\n".join(r.runbook_urls)),
            ]
        )


def _links(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    xc.start_table(ws, [("Kind", 10), ("Alert", 28), ("URL", 100)], len(c.links))
    for link in c.links:
        ws.append([link.kind, xc.text(ws, link.alertname), xc.text(ws, link.url)])


def _similar(ws: WriteOnlyWorksheet, c: IncidentContent) -> None:
    columns = [
        ("Incident", 12),
        ("Title", 50),
        ("State", 12),
        ("Severity", 11),
        ("Opened (UTC)", 20),
        ("Duration (min)", 14),
        ("Acknowledged by", 18),
        ("Resolved by", 18),
        ("Last comment by", 18),
        ("Last comment (UTC)", 20),
        ("Last comment", 80),
        ("Similarity", 11),
        ("Dashboard path", 24),
    ]
    xc.start_table(ws, columns, len(c.similar))
    for r in c.similar:
        ws.append(
            [
                xc.text(ws, r.key),
                xc.text(ws, r.title),
                xc.text(ws, r.state),
                xc.text(ws, r.severity),
                xc.when(ws, r.opened_at),
                minutes(r.duration_seconds),
                xc.text(ws, r.acknowledged_by),
                xc.text(ws, r.resolved_by),
                xc.text(ws, r.last_comment_by),
                xc.when(ws, r.last_comment_at),
                xc.text(ws, r.last_comment),
                r.similarity,
                xc.text(ws, r.path),
            ]
        )


SHEETS = (
    ("Summary", _summary),
    ("Alerts", _alerts),
    ("Timeline", _timeline),
    ("Metrics", _metrics),
    ("Logs", _logs),
    ("Security", _security),
    ("Series", _series),
    ("Error bursts", _bursts),
    ("Recommendations", _recommendations),
    ("Links", _links),
    ("Similar incidents", _similar),
)


def render_content(content: IncidentContent) -> bytes:
    wb = Workbook(write_only=True)
    wb.properties.creator = "Vigil"
    wb.properties.title = xc.clean_text(f"{content.summary.key}: {content.summary.title}")[:250]
    for title, write in SHEETS:
        write(xc.memory_sheet(wb, title), content)
    out = io.BytesIO()
    xc.save(wb, out, content.summary.as_of)
    return out.getvalue()


def render(report: IncidentReport) -> bytes:
    """The report as XLSX bytes; the same report always gives the same bytes."""
    return render_content(build(report))


def render_stored_json(document: bytes) -> bytes:
    """The XLSX of a stored JSON rendering (`incident_json.to_bytes`): the same bytes as the one rendered from the
    content that JSON was made of, so the reporter need not store an XLSX per version (the web renders it when it is
    downloaded)."""
    return render_content(IncidentContent.model_validate_json(document))
