"""The reporter stores Markdown and JSON per version and the web renders a version's XLSX from its stored JSON at the
first download (issue 18): that workbook must be exactly the one the reporter would have rendered. Pure: no I/O."""

from __future__ import annotations

import io
import json
from datetime import timedelta, timezone

import openpyxl

from shared.readmodel.models import LastComment, SimilarIncident
from shared.reports import incident_json, incident_xlsx
from shared.reports.incident_content import IncidentContent, build
from shared.reports.incident_report import IncidentReport, ReportAlert, TimelineEntry
from shared.reports.rendering import render_all
from tests.reporter.report_seed import HOSTILE_TITLE, context, minutes

KEY = "INC-000042"
# A zone other than UTC: alerts are plain dataclasses, not converted on the way in.
PLUS_TWO = timezone(timedelta(hours=2))


def rich_report() -> IncidentReport:
    """An incident with everything a report shows, and values that could be lost on the way through JSON: unicode
    beyond the BMP, control characters, formula-like text, floats with no short decimal form, huge and tiny numbers,
    negative zero, microseconds, times in another zone, empty and missing values, suppressed and adjusted alerts."""
    alerts = [
        ReportAlert(
            fingerprint="0123456789abcdef",
            alertname="HostDown",
            severity="critical",
            status="resolved",
            starts_at=minutes(0),
            ends_at=minutes(40).astimezone(PLUS_TWO),
            first_seen_at=minutes(0),
            last_seen_at=minutes(40),
            host="web-1",
            labels={"job": "node", "team": "ops", "zz": "last", "Ä": "ünïcödé 😀", "empty": ""},
            annotations={
                "summary": '=HYPERLINK("http://evil","click")',
                "description": "Down for 5 minutes.\r\n- check the NIC\n# not a heading\ttab",
                "runbook_url": "https://runbooks.example/HostDown?x=1&y=(2)",
                "actions": "- Check power and network\n- Restart node_exporter",
            },
            generator_url="http://prometheus.example/graph?g0.expr=up%3D%3D0",
            adjustments={"dropped_labels": 3, "cut": {"description": 1234}},
        ),
        ReportAlert(
            fingerprint="fedcba9876543210",
            alertname="Disk|Full\n<img src=x onerror=alert(1)>",
            severity="warning",
            status="firing",
            starts_at=(minutes(2) + timedelta(microseconds=123457)).astimezone(PLUS_TWO),
            first_seen_at=minutes(2),
            last_seen_at=minutes(3),
            host=None,
            labels={"path": "@SUM(1+1)", "nul": "a\x00b\x1fc\ufffe"},
            annotations={"summary": "-2+3 " + "x" * 40_000},
            generator_url="javascript:alert(1)",
            suppressed="silenced",
            silences=[{"id": "s-1", "created_by": "alice", "comment": "maintenance 🛠"}],
            suppressed_until=minutes(90),
        ),
        ReportAlert(
            fingerprint="00000000000000ff",
            alertname="HighLatency",
            severity="warning",
            status="stale",
            starts_at=minutes(5),
            first_seen_at=minutes(5),
            last_seen_at=minutes(6),
            host="web-2",
            annotations={"summary": "p99 latency above 2s"},
            suppressed="inhibited",
            inhibited_by=["0123456789abcdef"],
        ),
    ]
    ctx = context(KEY)
    odd = [0.1 + 0.2, 1e-300, 1.7976931348623157e308, -0.0, 2.0**53 + 1, 1 / 3]
    ctx.metrics[1].points = [(minutes(m), value) for m, value in enumerate(odd)]
    ctx.metrics[1].min, ctx.metrics[1].p95, ctx.metrics[1].baseline = -0.0, 0.1 + 0.2, None
    timeline = [
        TimelineEntry(at=minutes(0), kind="incident_opened", actor="correlator", detail={"title": "x", "n": 1.5}),
        TimelineEntry(at=minutes(7), kind="incident_acknowledged", actor="alice"),
        TimelineEntry(at=minutes(8), kind="comment", actor="ålice", detail={"comment": "Power | cycle\n<now> 😀"}),
        TimelineEntry(at=minutes(42), kind="incident_resolved", actor="system", detail={"reason": None}),
    ]
    similar = [
        SimilarIncident(
            key="INC-000007",
            title="HostDown on web-1 ☃",
            state="resolved",
            severity="critical",
            rule="default",
            opened_at=minutes(-600),
            acknowledged_at=minutes(-595),
            acknowledged_by="bob",
            resolved_at=minutes(-558),
            resolved_by="bob",
            shared=7,
            either=13,
            last_comment=LastComment(at=minutes(-560), actor="bob", text="restarted pgbouncer"),
        )
    ]
    return IncidentReport(
        key=KEY,
        title=HOSTILE_TITLE,
        state="resolved",
        severity="critical",
        rule="default",
        group_labels={"zone": "eu", "host": "web-1"},
        hosts=["web-1", "web-2"],
        revision=4,
        alert_count=3,
        firing_count=1,
        flapping=True,
        maintenance="patch tuesday ✓",
        opened_at=minutes(0),
        first_alert_at=minutes(0),
        last_alert_at=minutes(5),
        acknowledged_at=minutes(7),
        acknowledged_by="alice",
        resolved_at=minutes(42),
        resolved_by="system",
        alerts=alerts,
        timeline=timeline,
        context=ctx,
        context_version=2,
        as_of=minutes(46),
        alertmanager_url="https://am.example/",
        similar=similar,
    )


def test_the_xlsx_rendered_from_the_stored_json_is_the_one_the_content_renders() -> None:
    content = build(rich_report())
    stored = incident_json.to_bytes(incident_json.render_content(content))
    assert stored == render_all(rich_report())["json"].content  # what the reporter stores

    direct = incident_xlsx.render_content(content)
    assert incident_xlsx.render_content(IncidentContent.model_validate(json.loads(stored))) == direct
    assert incident_xlsx.render_stored_json(stored) == direct

    # Not two equally empty workbooks: the values under test are in it.
    book = openpyxl.load_workbook(io.BytesIO(direct))
    summary = {row[0].value: row[1].value for row in book["Summary"].iter_rows(min_row=2)}
    assert summary["Key"] == KEY and summary["Title"] == HOSTILE_TITLE
    labels = [row[8].value for row in book["Alerts"].iter_rows(min_row=2)]
    assert "Ä=ünïcödé 😀" in labels[0]
    values = [row[3].value for row in book["Metrics"].iter_rows(min_row=2) if row[0].value == "memory | rss"]
    assert len(values) == 6 and values[3] == 0


def test_reports_store_markdown_and_json_not_xlsx() -> None:
    assert list(render_all(rich_report())) == ["md", "json"]
