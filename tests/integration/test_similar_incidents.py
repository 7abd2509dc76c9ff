"""Similar past incidents on seeded data whose answer is known: signatures written by the correlator's and the
enricher's own statements (services/correlator/queries.sql, services/enricher/queries.sql), then read through the
read model, the API's JSON, the incident page and the reports (Markdown, JSON, XLSX). Hostile titles, comments,
labels and log lines come out escaped in each."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
from markdown_it import MarkdownIt
from psycopg.types.json import Jsonb

from services.correlator.store import Q as correlator_queries
from services.enricher.config import load_config
from services.enricher.consumer import QUERIES as enricher_queries
from services.enricher.signature import log_signature
from shared.config import Settings
from shared.incident_context import IncidentContext, LogBurst, LogLine, UpstreamStatus
from shared.readmodel import incidents
from shared.reports import incident_json, incident_markdown, incident_report, incident_xlsx
from shared.signatures import incident_tokens, log_templates, similarity
from tests.reporter.markdown_tables import tables
from tests.seed import add_timeline, insert_alert, insert_incident
from tests.web.webapp import READONLY_TOKEN, connect, login, serve_web, web_settings

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LOKI = load_config(Path("deploy/enrichment.yml")).loki
PARSER = MarkdownIt("commonmark").enable("table")
DB_TIMEOUT = "ERROR db timeout after {n}ms"
WORKER = "FATAL worker {n} crashed"


@dataclass
class Past:
    """An incident as seeded: its signature's parts, who handled it, what was said."""

    number: int
    opened_at: datetime
    host: str
    alertnames: Sequence[str]
    log_lines: Sequence[str] = ()
    rule: str = "default"
    title: str = ""
    state: str = "resolved"
    acknowledged: tuple[str, timedelta] | None = None
    resolved: tuple[str, timedelta] | None = None
    comments: Sequence[tuple[timedelta, str, str]] = ()
    # Other timeline entries (after the opening, kind, actor, detail): words given with a resolve, a silence's.
    entries: Sequence[tuple[timedelta, str, str | None, dict[str, str]]] = ()
    announced: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"INC-{self.number:06d}"

    @property
    def group_labels(self) -> dict[str, str]:
        return {"host": self.host, **self.labels}


def burst_context(key: str, opened_at: datetime, lines: Sequence[str]) -> IncidentContext:
    """An enrichment whose error burst is the minute the incident opened, holding `lines`."""
    minute = opened_at.replace(second=0, microsecond=0)
    return IncidentContext(
        incident_key=key,
        window_start=opened_at - timedelta(hours=1),
        window_end=opened_at + timedelta(minutes=10),
        generated_at=opened_at + timedelta(minutes=11),
        complete=True,
        upstreams=[UpstreamStatus(name="loki", ok=True, queries=3)],
        logs=[
            LogLine(at=minute + timedelta(seconds=50 - i), labels={"host": "web-1"}, line=line)
            for i, line in enumerate(lines)
        ],
        log_lines_total=len(lines),
        error_bursts=[LogBurst(minute=minute, errors=60)],
    )


async def seed(conn: psycopg.AsyncConnection[Any], past: Past) -> int:
    """The incident's rows, then its signature by the writers' own statements: the correlator's at the announcement,
    the enricher's with its enrichment."""
    ack, resolved = past.acknowledged, past.resolved
    incident_id = await insert_incident(
        conn,
        number=past.number,
        title=past.title or f"{past.alertnames[0]} on {past.host}",
        state=past.state,
        hosts=(past.host,),
        opened_at=past.opened_at,
        rule=past.rule,
        group_labels=past.group_labels,
        acknowledged_at=past.opened_at + ack[1] if ack else None,
        resolved_at=past.opened_at + resolved[1] if resolved else None,
    )
    await conn.execute(
        "UPDATE incidents SET acknowledged_by = %s, resolved_by = %s, announced = %s WHERE id = %s",
        (ack[0] if ack else None, resolved[0] if resolved else None, past.announced, incident_id),
    )
    for name in past.alertnames:
        await insert_alert(conn, incident_id, alertname=name, host=past.host, starts_at=past.opened_at)
    for after, actor, text in past.comments:
        await add_timeline(conn, incident_id, past.opened_at + after, "comment", actor, {"comment": text})
    for after, kind, actor, detail in past.entries:
        await add_timeline(conn, incident_id, past.opened_at + after, kind, actor, detail)
    await conn.execute(
        correlator_queries.add_signature_tokens, {"announced": [incident_id], "incident_ids": [], "alertnames": []}
    )
    if past.log_lines and past.announced:
        context = burst_context(past.key, past.opened_at, past.log_lines)
        await conn.execute(
            "INSERT INTO enrichments (incident_id, incident_revision, complete, context) VALUES (%s, 1, true, %s)",
            (incident_id, Jsonb(context.model_dump(mode="json"))),
        )
        templates = log_signature(context, LOKI)
        await conn.execute(enricher_queries.replace_log_signature, {"incident_id": incident_id, "templates": templates})
    return incident_id


def days_before(days: float) -> datetime:
    return NOW - timedelta(days=days)


MIN = timedelta(minutes=1)
TARGET = Past(
    100, NOW, "web-1", ["HighCpu", "DiskFull"], [DB_TIMEOUT.format(n=1500), WORKER.format(n=7)] * 3, state="open"
)
HISTORY = [
    # The same signature; other numbers in the same log lines. 10/10.
    Past(
        1,
        days_before(9),
        "web-1",
        ["DiskFull", "HighCpu"],
        [DB_TIMEOUT.format(n=30), WORKER.format(n=12)],
        acknowledged=("alice", 5 * MIN),
        resolved=("bob", 42 * MIN),
        comments=[(6 * MIN, "alice", "looking"), (40 * MIN, "bob", "restarted pgbouncer")],
        # Later entries without a person's words: the resolve, and a silence's own comment.
        entries=[
            (41 * MIN, "alert_silenced", None, {"comment": "maintenance window"}),
            (42 * MIN, "incident_resolved", "bob", {}),
        ],
    ),
    # Same host, one of the alerts, one of the templates: 7/10.
    Past(
        2,
        days_before(8),
        "web-1",
        ["HighCpu"],
        [DB_TIMEOUT.format(n=99)],
        acknowledged=("carol", 3 * MIN),
        resolved=("system", 20 * MIN),
    ),
    # Another host, the same alerts and templates: 7/13. Acknowledged, still unresolved.
    Past(
        3,
        days_before(7),
        "web-2",
        ["HighCpu", "DiskFull"],
        [WORKER.format(n=3), DB_TIMEOUT.format(n=1)],
        state="acknowledged",
        acknowledged=("frank", 10 * MIN),
        comments=[(11 * MIN, "frank", "still digging")],
    ),
    # Same host, another alert: 4/12. Sixth: not listed.
    Past(4, days_before(6), "web-1", ["MemoryLow"], resolved=("system", 9 * MIN)),
    # Same host and one alert, no logs: 6/10; #6 is the same but more recent, so it comes first.
    Past(
        5,
        days_before(5),
        "web-1",
        ["HighCpu"],
        resolved=("dave", 15 * MIN),
        comments=[(14 * MIN, "eve", "raised the CPU quota")],
        # The words given with the resolve come after eve's comment: they are the last.
        entries=[(15 * MIN, "incident_resolved", "dave", {"comment": "quota now 4 cores"})],
    ),
    Past(6, days_before(4), "web-1", ["HighCpu"], state="open"),
    # Another host, one alert: 3/13. Another rule, another host and alert, one template: 1/16. Neither listed.
    Past(7, days_before(3), "web-3", ["DiskFull"], resolved=("system", 5 * MIN)),
    Past(8, days_before(2), "web-9", ["Foo"], [DB_TIMEOUT.format(n=5)], rule="other", resolved=("system", 5 * MIN)),
    # Identical, but held back (never announced) or opened after the incident: never listed.
    Past(9, days_before(1), "web-1", ["HighCpu", "DiskFull"], TARGET.log_lines, announced=False),
    Past(101, NOW + timedelta(hours=1), "web-1", ["HighCpu", "DiskFull"], TARGET.log_lines, state="open"),
]
EXPECTED = ["INC-000001", "INC-000002", "INC-000006", "INC-000005", "INC-000003"]
EXPECTED_SCORES = [Fraction(10, 10), Fraction(7, 10), Fraction(6, 10), Fraction(6, 10), Fraction(7, 13)]


def tokens_of(past: Past) -> set[tuple[Any, str]]:
    return set(incident_tokens(past.rule, past.group_labels, past.alertnames, log_templates(past.log_lines)))


async def seed_history(db_url: str) -> None:
    async with await connect(db_url) as conn:
        await seed(conn, TARGET)
        for past in HISTORY:
            await seed(conn, past)


async def test_the_five_closest_earlier_incidents_everywhere(settings: Settings, tmp_path: Path, db_url: str) -> None:
    await seed_history(db_url)
    by_key = {p.key: p for p in HISTORY}
    # The expected answer, by the score's definition over the seeded parts (not by the database).
    assert [similarity(tokens_of(TARGET), tokens_of(by_key[k])) for k in EXPECTED] == EXPECTED_SCORES
    assert similarity(tokens_of(TARGET), tokens_of(by_key["INC-000004"])) == Fraction(1, 3)

    # The read model.
    async with await connect(db_url) as conn:
        found = await incidents.incident(conn, TARGET.key)
        assert found is not None
        similar = await incidents.similar(conn, found.id)
        assert [s.key for s in similar] == EXPECTED
        assert [Fraction(s.shared, s.either) for s in similar] == EXPECTED_SCORES
        first, second, sixth, fifth, third = similar
        assert (first.acknowledged_by, first.resolved_by, first.duration) == ("alice", "bob", 42 * MIN)
        assert first.last_comment is not None
        assert (first.last_comment.actor, first.last_comment.text) == ("bob", "restarted pgbouncer")
        assert first.last_comment.at == by_key["INC-000001"].opened_at + 40 * MIN
        assert (second.acknowledged_by, second.resolved_by, second.last_comment) == ("carol", "system", None)
        assert (sixth.state, sixth.duration, sixth.acknowledged_by) == ("open", None, None)
        assert fifth.last_comment is not None
        assert (fifth.last_comment.actor, fifth.last_comment.text) == ("dave", "quota now 4 cores")
        assert (third.state, third.acknowledged_by, third.resolved_by, third.duration) == (
            "acknowledged",
            "frank",
            None,
            None,
        )
        # An earlier incident's own list holds only incidents earlier than it: #1 has none before it.
        oldest = await incidents.incident(conn, "INC-000001")
        assert oldest is not None and await incidents.similar(conn, oldest.id) == []
        assert [s.key for s in await incidents.similar(conn, found.id, limit=2)] == EXPECTED[:2]

    async with serve_web(web_settings(settings, tmp_path)) as web:
        # The API.
        async with web.client(READONLY_TOKEN) as client:
            body = (await client.get(f"/api/v1/incidents/{TARGET.key}")).json()
        listed = body["similar"]
        assert [s["key"] for s in listed] == EXPECTED
        assert [s["similarity"] for s in listed] == [1.0, 0.7, 0.6, 0.6, 0.5385]
        assert listed[0] | {"last_comment": None} == {
            "key": "INC-000001",
            "title": "DiskFull on web-1",
            "state": "resolved",
            "severity": "critical",
            "rule": "default",
            "opened_at": "2026-11-11T12:00:00Z",
            "duration_seconds": 42 * 60.0,
            "acknowledged_at": "2026-11-11T12:05:00Z",
            "acknowledged_by": "alice",
            "resolved_at": "2026-11-11T12:42:00Z",
            "resolved_by": "bob",
            "maintenance": None,
            "similarity": 1.0,
            "last_comment": None,
            "url": "/incidents/INC-000001",
        }
        assert listed[0]["last_comment"] == {
            "at": "2026-11-11T12:40:00Z",
            "actor": "bob",
            "text": "restarted pgbouncer",
        }
        assert [s["duration_seconds"] for s in listed] == [42 * 60.0, 20 * 60.0, None, 15 * 60.0, None]

        # The incident page.
        async with web.client() as client:
            await login(client, "alice")
            page = (await client.get(f"/incidents/{TARGET.key}")).text
        section = page[page.index('id="h-similar"') : page.index("</section>", page.index('id="h-similar"'))]
        assert re.findall(r'<tr><td><a href="/incidents/(INC-\d+)">', section) == EXPECTED
        rows = section.split("<tr>")[2:]
        assert "42m 0s" in rows[0] and "bob: <span" in rows[0] and "restarted pgbouncer" in rows[0]
        assert ">alice<" in rows[0] and ">100%<" in rows[0]
        assert "still open" in rows[2] and "still acknowledged" in rows[4] and ">54%<" in rows[4]

    # The reports.
    async with await connect(db_url) as conn:
        report = await incident_report.load(conn, TARGET.key)
    assert report is not None
    document = incident_json.render(report)
    assert [s["key"] for s in document["similar"]] == EXPECTED
    assert document["similar"][0]["last_comment"] == "restarted pgbouncer"
    assert document["similar"][0]["last_comment_by"] == "bob"
    assert document["similar"][4]["path"] == "/incidents/INC-000003"
    markdown = incident_markdown.render(report)
    tokens = PARSER.parse(markdown)
    similar_table = next(t for t in tables(tokens) if t[0][0] == "Incident")
    assert [row[0] for row in similar_table[1:]] == EXPECTED
    assert similar_table[1][3:8] == ["42m 00s", "alice", "bob", "bob: restarted pgbouncer", "100%"]
    assert similar_table[3][3] == "still open" and similar_table[5][3] == "still acknowledged"
    links = [c.attrGet("href") for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "link_open"]
    assert [f"/incidents/{key}" for key in EXPECTED] == [href for href in links if str(href).startswith("/incidents/")]
    sheet = openpyxl.load_workbook(io.BytesIO(incident_xlsx.render(report)))["Similar incidents"]
    rows_xlsx = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert [row[0] for row in rows_xlsx] == EXPECTED
    assert rows_xlsx[0][5] == 42 and rows_xlsx[0][8:11] == [
        "bob",
        datetime(2026, 11, 11, 12, 40),
        "restarted pgbouncer",
    ]
    assert rows_xlsx[4][11] == 0.5385


async def test_sharing_only_the_rule_is_not_similar(db_url: str) -> None:
    async with await connect(db_url) as conn:
        await seed(conn, Past(1, days_before(2), "web-7", ["Other"], resolved=("system", MIN)))
        await seed(conn, Past(2, days_before(1), "web-1", ["DiskFull"], resolved=("system", MIN)))
        target = await seed(conn, TARGET)
        # #1 shares the rule `default` alone; #2 the rule and more.
        assert [s.key for s in await incidents.similar(conn, target)] == ["INC-000002"]


HOSTILE_LABEL = 'web-1"><script>alert("label")</script>|**x**'
HOSTILE_ALERT = "<img src=x onerror=alert(1)>|Disk"
HOSTILE_LOG = '<script>alert("log")</script> | ERROR [click](javascript:alert(3)) after {n}ms'
HOSTILE_TITLE = 'Disk | full\n# <img src=x onerror=alert(2)> [click](javascript:alert(4)) =HYPERLINK("http://evil")'
HOSTILE_COMMENT = '<script>alert("comment")</script> | **bold** [x](javascript:alert(5))\n# heading'
HOSTILE_ACTOR = "<b>mallory</b>"


async def test_hostile_labels_log_lines_titles_and_comments_match_and_show_escaped(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    twin = Past(
        1,
        days_before(1),
        "x",
        [HOSTILE_ALERT],
        [HOSTILE_LOG.format(n=12)],
        title=HOSTILE_TITLE,
        labels={"host": HOSTILE_LABEL},
        acknowledged=(HOSTILE_ACTOR, MIN),
        resolved=(HOSTILE_ACTOR, 2 * MIN),
        comments=[(MIN, HOSTILE_ACTOR, HOSTILE_COMMENT)],
    )
    target = Past(2, NOW, "x", [HOSTILE_ALERT], [HOSTILE_LOG.format(n=999)], labels={"host": HOSTILE_LABEL})
    async with await connect(db_url) as conn:
        await seed(conn, twin)
        target_id = await seed(conn, target)
        [found] = await incidents.similar(conn, target_id)
    assert (found.key, found.shared, found.either) == ("INC-000001", 7, 7)  # rule, label, alert, one template

    async with serve_web(web_settings(settings, tmp_path)) as web:
        async with web.client(READONLY_TOKEN) as client:
            [listed] = (await client.get("/api/v1/incidents/INC-000002")).json()["similar"]
        assert (listed["title"], listed["last_comment"]["text"]) == (HOSTILE_TITLE, HOSTILE_COMMENT)
        async with web.client() as client:
            await login(client, "alice")
            page = (await client.get("/incidents/INC-000002")).text
    section = page[page.index('id="h-similar"') : page.index("</section>", page.index('id="h-similar"'))]
    for raw in ("<script", "<img", "<b>", 'href="javascript:'):
        assert raw not in section, raw
    assert "&lt;img src=x onerror=alert(2)&gt;" in section
    assert "&lt;b&gt;mallory&lt;/b&gt;: <span" in section
    assert "&lt;script&gt;alert(&#34;comment&#34;)&lt;/script&gt;" in section

    async with await connect(db_url) as conn:
        report = await incident_report.load(conn, "INC-000002")
    assert report is not None
    tokens = PARSER.parse(incident_markdown.render(report))
    assert not [t for t in tokens if t.type == "html_block"]
    similar_table = next(t for t in tables(tokens) if t[0][0] == "Incident")  # inline_text refuses raw HTML
    assert similar_table[1][1] == HOSTILE_TITLE.replace("\n", " ")
    assert similar_table[1][4:7] == [
        HOSTILE_ACTOR,
        HOSTILE_ACTOR,
        f"{HOSTILE_ACTOR}: {HOSTILE_COMMENT}".replace("\n", " "),
    ]
    links = [c.attrGet("href") for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "link_open"]
    assert "/incidents/INC-000001" in links and not [h for h in links if "javascript" in str(h)]
    assert incident_json.render(report)["similar"][0]["title"] == HOSTILE_TITLE
    sheet = openpyxl.load_workbook(io.BytesIO(incident_xlsx.render(report)))["Similar incidents"]
    title_cell = sheet.cell(row=2, column=2)
    assert title_cell.value == HOSTILE_TITLE and title_cell.data_type == "s"
