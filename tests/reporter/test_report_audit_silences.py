"""The audit says which acknowledgements a silence made (VIGIL_SILENCE_ACKNOWLEDGES), in both formats."""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import psycopg
from markdown_it import MarkdownIt
from psycopg.types.json import Jsonb

from shared.reports import audit, audit_markdown, audit_xlsx
from tests.reporter.markdown_tables import tables
from tests.reporter.test_report_audit import SINCE, UNTIL, at, seed_period
from tests.seed import insert_incident


async def test_acknowledgements_by_a_silence_are_counted_and_marked(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_period(conn)
    silenced = await insert_incident(conn, number=9, hosts=("db-3",), opened_at=at(200), acknowledged_at=at(202))
    await conn.execute(
        "INSERT INTO incident_timeline (incident_id, at, kind, actor, detail) VALUES (%s, %s, %s, %s, %s)",
        (silenced, at(202), "incident_acknowledged", "bob", Jsonb({"via": "silence", "silence_id": "s-1"})),
    )
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.acknowledged_by_silence == 1
        via = {r.key: r.acknowledged_via for r in report.incidents}
        assert via["INC-000009"] == "silence" and via["INC-000001"] is None
        text = audit_markdown.render(report)
        out = io.BytesIO()
        audit_xlsx.write(report, out)
    summary, *_ = tables(MarkdownIt("commonmark").enable("table").parse(text))
    assert dict(summary[1:])["Acknowledged by a silence"] == "1"
    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert {row[0].value: row[1].value for row in wb["Summary"].iter_rows(min_row=2)}["Acknowledged by a silence"] == 1
    header = [c.value for c in next(wb["Incidents"].iter_rows(max_row=1))]
    column = header.index("Acknowledged via")
    assert [row[column].value for row in wb["Incidents"].iter_rows(min_row=2)].count("silence") == 1
