"""Incident reports as Markdown: the golden report of a fixed incident, hostile alert data, and the escaper itself.

Regenerate the golden file deliberately:
VIGIL_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/reporter/test_report_markdown.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from shared.reports import incident_markdown, incident_report
from shared.reports import markdown_text as md
from tests.reporter.markdown_tables import inline_text, tables, unescaped_pipes
from tests.reporter.report_seed import KEY, seed_incident

GOLDEN = Path(__file__).parent / "golden" / "incident_report.md"
PARSER = MarkdownIt("commonmark").enable("table")


async def test_fixed_incident_renders_the_golden_report(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_incident(conn)
    report = await incident_report.load(conn, KEY)
    assert report is not None
    rendered = incident_markdown.render(report)
    if os.environ.get("VIGIL_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text(), "report differs from tests/reporter/golden/incident_report.md"
    # Same data, same bytes: render again from a fresh load.
    again = await incident_report.load(conn, KEY)
    assert again is not None
    assert incident_markdown.render(again) == rendered


async def test_golden_report_says_what_an_on_call_engineer_needs(conn: psycopg.AsyncConnection[Any]) -> None:
    """Guards the golden file against being regenerated from a broken renderer."""
    text = GOLDEN.read_text()
    for expected in (
        "# INC-000042: HostDown on web-1",
        "| Duration | 42m 00s |",
        "| Time to acknowledge | 7m 00s |",
        "| Time to resolve | 42m 00s |",
        "| Acknowledged | 2026-11-01 03:07:00 by alice |",
        "| cpu | % | 5 | 41.25 | 65 | 63.5 | 65 | 2026-11-01 03:30:00 |",
        "1234 log lines matched",
        "| 2026-11-01 03:01:00 | 57 |",
        "| 2026-11-01 03:03:00 | ban | 203.0.113.9 | sshd | web-1 |",
        "- Check power and network",
        "Runbook: [https://runbooks.example/HostDown?x=1&amp;y=(2)](<https://runbooks.example/HostDown?x=1&y=(2)>)",
        "Source (HostDown): [http://prometheus.example/graph?g0.expr=up%3D%3D0]",
        "partial",
    ):
        assert expected in text, expected


async def test_unknown_incident_loads_as_none(conn: psycopg.AsyncConnection[Any]) -> None:
    assert await incident_report.load(conn, "INC-999999") is None


async def test_hostile_labels_cannot_break_tables_or_inject_html(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_incident(conn, hostile=True)
    report = await incident_report.load(conn, KEY)
    assert report is not None
    text = incident_markdown.render(report)

    tokens = PARSER.parse(text)
    assert not [t for t in tokens if t.type == "html_block"]
    html = PARSER.render(text)
    for tag in ("<script", "<img", "<b>", "javascript:"):
        assert tag not in html.replace("&lt;", "").replace("&amp;", ""), tag

    # Every table line has as many cell separators as its header line: no `|` or newline split a row.
    lines = text.splitlines()
    in_block = False
    header_pipes: int | None = None
    for line in lines:
        if line.startswith("```"):
            in_block = not in_block
        if in_block or not line.startswith("|"):
            header_pipes = None
            continue
        pipes = unescaped_pipes(line)
        if header_pipes is None:
            header_pipes = pipes
        assert pipes == header_pipes, line

    # The cells hold exactly the hostile values (newlines shown as spaces), in the right columns.
    summary, _timeline, alerts, *_ = tables(tokens)
    assert dict(summary[1:])["Title"] == report.title.replace("\n", " ")
    assert [row[0] for row in alerts[1:]] == ["Disk|Full <img src=x onerror=alert(1)>", "HighLatency", "HighLatency"]
    assert [row[7] for row in alerts[1:]] == ['=HYPERLINK("http://evil","click")', "+1 p99 latency above 2s", "-2+3"]
    assert all(len(row) == 9 for row in alerts)

    # The headings hold the text as well, not markup; the `javascript:` source URL is not a link.
    headings = [inline_text(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[0] == f"{KEY}: " + report.title.replace("\n", " ")
    links = [t.attrGet("href") for t in tokens if t.type == "inline" for t in t.children or [] if t.type == "link_open"]
    assert links and all(str(href).startswith("http") for href in links)


def test_escaped_table_cell_contents_round_trip() -> None:
    hostile = ["a|b", "line1\nline2", "back\\|slash", "<script>x</script>", "`code`", "*em* _u_", "[l](http://x)"]
    hostile.append("&amp;")
    table = "| A | B |\n| --- | --- |\n" + "".join(f"| {md.cell(v)} | x |\n" for v in hostile)
    rows = tables(PARSER.parse(table))[0][1:]
    assert [row[0] for row in rows] == [v.replace("\n", " ") for v in hostile]
    assert all(row[1] == "x" for row in rows)


TRICKY = st.text(alphabet=st.sampled_from(list("ab1 .|\\`*_[]()<>&#!-+=~:;\n\t{}\"'")), max_size=40)


def visible(value: str) -> str:
    return re.sub(r"\s*\n\s*", " ", value.replace("\t", " ")).strip(" ")


@settings(max_examples=300, deadline=None)
@given(TRICKY)
def test_inline_text_reads_back_exactly(value: str) -> None:
    tokens = PARSER.parse(f"- **Label:** {md.inline(value)}\n")
    inline = next(t for t in tokens if t.type == "inline")
    text = inline_text(inline)
    kinds = [c.type for c in inline.children or [] if c.type != "text" or c.content]
    assert kinds[:3] == ["strong_open", "text", "strong_close"]
    assert "strong_open" not in kinds[3:] and "em_open" not in kinds and "link_open" not in kinds
    assert re.sub(" +", " ", text.removeprefix("Label:").strip()) == re.sub(" +", " ", visible(value))


@settings(max_examples=300, deadline=None)
@given(TRICKY)
def test_table_cell_reads_back_exactly(value: str) -> None:
    rows = tables(PARSER.parse(f"| A | B |\n| --- | --- |\n| {md.cell(value)} | end |\n"))[0]
    assert len(rows) == 2
    assert re.sub(" +", " ", rows[1][0]) == re.sub(" +", " ", visible(value))
    assert rows[1][1] == "end"


@settings(max_examples=200, deadline=None)
@given(TRICKY)
def test_paragraph_keeps_lines_and_stays_one_paragraph(value: str) -> None:
    tokens = PARSER.parse(f"### Heading\n\n{md.paragraph(value)}\n")
    kinds = [t.type for t in tokens]
    assert kinds.count("heading_open") == 1
    assert kinds.count("paragraph_open") <= 1
    assert all(k in ("heading_open", "inline", "heading_close", "paragraph_open", "paragraph_close") for k in kinds)


def test_code_block_cannot_be_closed_by_its_content() -> None:
    block = md.code_block(["```", "````", "<b>x</b>", "~~~"])
    tokens = PARSER.parse(f"{block}\n\nafter\n")
    assert tokens[0].type == "fence"
    assert tokens[0].content == "```\n````\n<b>x</b>\n~~~\n"
    assert tokens[1].type == "paragraph_open"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (61, "1m 01s"), (3_723, "1h 02m 03s"), (90_061, "1d 01h 01m 01s"), (-5, "-5s")],
)
def test_durations_read_like_a_clock(seconds: float, text: str) -> None:
    assert md.duration(seconds) == text
