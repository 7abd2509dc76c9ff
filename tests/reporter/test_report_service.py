"""The reporter service end to end against the real broker and database: an incident event in, versioned reports
in PostgreSQL and `report.ready` out; redelivery changes nothing; an event about no incident is parked; a slow
rendering of an older state never becomes the latest report."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import openpyxl
import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from services.reporter import consumer, report_store
from services.reporter.app import build_app
from services.reporter.consumer import ReportHandler
from services.reporter.versions import Source
from services.web.downloads import incident_file
from shared.config import Settings
from shared.contracts import (
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentEventType,
    IncidentSnapshot,
    incident_routing_key,
)
from shared.db import open_pool
from shared.messaging import REPORTER_QUEUE, Broker
from shared.readmodel.queries import QUERIES as READ_QUERIES
from shared.reports import incident_markdown, incident_report, incident_xlsx
from shared.reports.incident_report import IncidentReport
from shared.reports.rendering import Rendered, render_all
from shared.reports.stored import newest as newest_report
from tests.conftest import running
from tests.reporter.report_seed import KEY, minutes, seed_incident
from tests.seed import add_timeline
from tests.web.webapp import READONLY_TOKEN, serve_web, web_settings


def incident_event(
    kind: IncidentEventType, key: str = KEY, detail: dict[str, Any] | None = None
) -> Envelope[IncidentEvent]:
    snapshot = IncidentSnapshot(
        key=key,
        title="HostDown on web-1",
        state="resolved",
        severity="critical",
        rule="default",
        group_labels={"host": "web-1"},
        hosts=["web-1", "web-2"],
        alert_count=3,
        firing_count=0,
        revision=4,
        opened_at=minutes(0),
        first_alert_at=minutes(0),
        last_alert_at=minutes(5),
        resolved_at=minutes(42),
    )
    event = IncidentEvent(incident=snapshot, change="enriched", detail=detail or {})
    return Envelope(type=kind.value, producer="test", data=event)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[str]:
    async with running(build_app(settings), settings.reporter_port) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(300):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("reporter never became ready")
        yield url


@pytest.fixture
async def publisher(amqp_url: str) -> AsyncIterator[Broker]:
    broker = Broker(amqp_url, producer="test", retry_delays_ms=(100, 200))
    await broker.start()
    await asyncio.wait_for(broker.wait_connected(), 30)
    yield broker
    await broker.close()


@pytest.fixture
async def ready_queue(amqp_url: str, service: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of our own bound to report.ready.# (the service has declared the exchange by now)."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(INCIDENTS_EXCHANGE)
        queue = await channel.declare_queue("test.report-ready", exclusive=True)
        await queue.bind(exchange, "report.ready.#")
        yield queue


async def next_message(queue: aio_pika.abc.AbstractQueue, timeout: float = 30) -> aio_pika.abc.AbstractIncomingMessage:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    pytest.fail("no report.ready arrived")


async def stored_reports(db_url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        cur = await conn.execute("SELECT version, format, content, sha256 FROM reports ORDER BY version, format")
        return await cur.fetchall()


async def test_enriched_incident_gets_stored_reports_and_report_ready(
    settings: Settings, service: str, publisher: Broker, ready_queue: aio_pika.abc.AbstractQueue
) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row, autocommit=True) as c:
        incident_id = await seed_incident(c)

    event = incident_event(IncidentEventType.enriched)
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    first = await next_message(ready_queue)
    assert first.routing_key == "report.ready.critical"
    body = json.loads(first.body)
    assert body["type"] == "report.ready"
    assert body["data"] == {"key": KEY, "report_version": 1, "formats": ["md", "xlsx", "json"]}

    # Markdown and JSON are stored; the XLSX the message lists is rendered from the JSON when downloaded.
    rows = await stored_reports(settings.database_url)
    assert [(r["version"], r["format"]) for r in rows] == [(1, "json"), (1, "md")]
    for row in rows:
        assert row["sha256"] == hashlib.sha256(row["content"]).hexdigest()
    async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row, autocommit=True) as c:
        report = await incident_report.load(c, KEY)
    assert report is not None
    by_format = {r["format"]: bytes(r["content"]) for r in rows}
    assert by_format["md"].decode() == incident_markdown.render(report)
    assert json.loads(by_format["json"])["summary"]["key"] == KEY

    # The same message again (a redelivery, or a storm's queued events): the reports already show this revision
    # and enrichment and were announced, so nothing is rendered, stored or announced again.
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    await asyncio.sleep(2)
    assert await ready_queue.get(fail=False, no_ack=True) is None
    assert len(await stored_reports(settings.database_url)) == 2

    # A real change (a comment after resolution, which bumps the revision as the correlator does), then
    # incident.resolved: version 2, version 1 kept for audits.
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        await add_timeline(c, incident_id, minutes(50), "comment", "bob", {"comment": "postmortem scheduled"})
        await c.execute(
            "UPDATE incidents SET updated_at = %s, revision = revision + 1 WHERE id = %s", (minutes(50), incident_id)
        )
    resolved = incident_event(IncidentEventType.resolved)
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(resolved.type, "critical"), resolved)
    third = await next_message(ready_queue)
    assert json.loads(third.body)["data"]["report_version"] == 2
    rows = await stored_reports(settings.database_url)
    assert [(r["version"], r["format"]) for r in rows if r["version"] == 2] == [(2, "json"), (2, "md")]
    markdown_v2 = next(bytes(r["content"]) for r in rows if r["version"] == 2 and r["format"] == "md")
    assert b"postmortem scheduled" in markdown_v2

    async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row) as c:
        newest = await newest_report(c, KEY, "md")
        assert await newest_report(c, "INC-999999", "md") is None
    assert newest is not None and newest.version == 2 and newest.content == markdown_v2

    async with httpx.AsyncClient(base_url=service) as client:
        metrics = (await client.get("/metrics")).text
    assert 'vigil_reports_rendered_total{format="md"}' in metrics


def workbook_cells(content: bytes) -> tuple[dict[str, Any], list[str], list[str]]:
    """The Summary sheet's fields, the Alerts sheet's alert names and the Timeline sheet's details."""
    book = openpyxl.load_workbook(io.BytesIO(content))
    summary = {row[0].value: row[1].value for row in book["Summary"].iter_rows(min_row=2)}
    alerts = [row[0].value for row in book["Alerts"].iter_rows(min_row=2)]
    timeline = [row[4].value or "" for row in book["Timeline"].iter_rows(min_row=2)]
    return summary, alerts, timeline


async def test_the_xlsx_download_is_the_newest_stored_version_rendered_from_its_json_once(
    settings: Settings,
    tmp_path: Path,
    service: str,
    publisher: Broker,
    ready_queue: aio_pika.abc.AbstractQueue,
) -> None:
    """The reporter stores no XLSX. The web renders the newest version's workbook from its stored JSON at the first
    download, answers the next from its cache, and once a newer version is stored, shows that one."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row, autocommit=True) as c:
        incident_id = await seed_incident(c)
    rendered = REGISTRY.get_sample_value("vigil_reports_rendered_total", {"format": "xlsx"}) or 0.0
    event = incident_event(IncidentEventType.enriched)
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    assert json.loads((await next_message(ready_queue)).body)["data"]["report_version"] == 1
    assert "xlsx" not in {r["format"] for r in await stored_reports(settings.database_url)}
    version_1 = await load(settings.database_url)

    async with serve_web(web_settings(settings, tmp_path)) as web, web.client(READONLY_TOKEN) as client:
        url = f"/api/v1/incidents/{KEY}/report.xlsx"
        first = await client.get(url)
        assert first.status_code == 200 and first.headers["X-Vigil-Report"] == "rendered from stored v1"
        assert first.content == incident_xlsx.render(version_1)  # byte for byte what the reporter would have stored
        summary, alerts, timeline = workbook_cells(first.content)
        assert summary["Key"] == KEY and summary["Revision"] == 4
        assert alerts == ["HostDown", "HighLatency", "HighLatency"]
        assert not any("postmortem scheduled" in text for text in timeline)

        again = await client.get(url)
        assert again.headers["X-Vigil-Report"] == "rendered from stored v1 (cached)"
        assert again.content == first.content

        # The incident changes and the reporter stores version 2: the cached version 1 is not what is served.
        await comment(settings.database_url, incident_id, "postmortem scheduled")
        resolved = incident_event(IncidentEventType.resolved)
        await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(resolved.type, "critical"), resolved)
        assert json.loads((await next_message(ready_queue)).body)["data"]["report_version"] == 2
        newer = await client.get(url)
        assert newer.status_code == 200 and newer.headers["X-Vigil-Report"] == "rendered from stored v2"
        summary, _, timeline = workbook_cells(newer.content)
        assert summary["Revision"] == 5 and any("postmortem scheduled" in text for text in timeline)

    # Two renderings (one per version), not three: the cached answer rendered nothing.
    assert (REGISTRY.get_sample_value("vigil_reports_rendered_total", {"format": "xlsx"}) or 0.0) - rendered == 2


async def test_an_enrichment_superseded_by_a_stored_newer_one_is_not_rendered(
    settings: Settings, service: str, publisher: Broker, ready_queue: aio_pika.abc.AbstractQueue
) -> None:
    """In a storm the reporter's queue holds several `incident.enriched` per incident; the database already has
    version 2 (seeded), so the event announcing version 1 renders nothing and version 2's own event renders it."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        await seed_incident(c)
    old = incident_event(IncidentEventType.enriched, detail={"version": 1})
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(old.type, "critical"), old)
    await asyncio.sleep(2)
    assert await ready_queue.get(fail=False, no_ack=True) is None
    assert await stored_reports(settings.database_url) == []
    async with httpx.AsyncClient(base_url=service) as client:
        assert 'vigil_report_versions_total{outcome="superseded"} 1.0' in (await client.get("/metrics")).text

    current = incident_event(IncidentEventType.enriched, detail={"version": 2})
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(current.type, "critical"), current)
    assert json.loads((await next_message(ready_queue)).body)["data"]["report_version"] == 1


async def test_an_open_incident_enriched_again_within_the_interval_is_rendered_once_the_interval_has_passed(
    settings: Settings, service: str, publisher: Broker, ready_queue: aio_pika.abc.AbstractQueue
) -> None:
    """A growing open incident is rendered at most once per refresh interval (1 s here): an `incident.enriched`
    soon after a rendering is deferred, and its copy, back after the interval, renders the state of then."""
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        incident_id = await seed_incident(c)
        await c.execute("UPDATE incidents SET state = 'open', resolved_at = NULL WHERE id = %s", (incident_id,))
    deferred_before = REGISTRY.get_sample_value("vigil_report_versions_total", {"outcome": "defer"}) or 0.0
    event = incident_event(IncidentEventType.enriched, detail={"version": 2})
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    assert json.loads((await next_message(ready_queue)).body)["data"]["report_version"] == 1

    await comment(settings.database_url, incident_id, "root cause: a failed NIC")
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as c:
        # Rendered just now, whatever time the steps above took: the next event falls inside the interval.
        await c.execute("UPDATE report_sources SET rendered_at = now() WHERE incident_id = %s", (incident_id,))
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    assert json.loads((await next_message(ready_queue)).body)["data"]["report_version"] == 2

    deferred = REGISTRY.get_sample_value("vigil_report_versions_total", {"outcome": "defer"}) or 0.0
    assert deferred - deferred_before == 1
    markdown_v2 = next(bytes(r["content"]) for r in await stored_reports(settings.database_url) if r["version"] == 2)
    assert b"root cause: a failed NIC" in markdown_v2


async def test_event_about_an_unknown_incident_is_parked_not_retried_forever(
    settings: Settings, service: str, publisher: Broker, amqp_url: str
) -> None:
    event = incident_event(IncidentEventType.enriched, key="INC-999999")
    await publisher.publish(INCIDENTS_EXCHANGE, incident_routing_key(event.type, "critical"), event)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        parking = await channel.get_queue(f"{REPORTER_QUEUE.name}.parking")
        message = await next_message(parking)
    assert json.loads(message.body)["id"] == str(event.id)
    assert "INC-999999" in str((message.headers or {}).get("x-vigil-error"))
    assert await stored_reports(settings.database_url) == []


async def comment(db_url: str, incident_id: int, text: str) -> None:
    """A comment on the resolved incident, with the next revision, as the correlator writes it."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        await add_timeline(c, incident_id, minutes(50), "comment", "bob", {"comment": text})
        await c.execute(
            "UPDATE incidents SET updated_at = %s, revision = revision + 1 WHERE id = %s", (minutes(50), incident_id)
        )


async def load(db_url: str) -> IncidentReport:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        report = await incident_report.load(c, KEY)
    assert report is not None
    return report


async def store(db_url: str, report: IncidentReport) -> report_store.Stored:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        stored = await report_store.store(
            c, KEY, render_all(report), Source(report.revision, report.context_version), state=report.state
        )
    assert stored is not None
    return stored


async def test_a_rendering_of_an_older_revision_stored_last_does_not_become_the_latest_report(db_url: str) -> None:
    """Two renderings race: one read revision 5, the other revision 6 and stored its reports first. The older one,
    stored last, is superseded: the latest report (what the web serves) stays revision 6's, under the newest
    version number, and `report_sources` still describes it."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        incident_id = await seed_incident(c)
    assert (await store(db_url, await load(db_url))).version == 1
    await comment(db_url, incident_id, "root cause: a failed NIC")
    old = await load(db_url)
    await comment(db_url, incident_id, "postmortem scheduled")
    new = await load(db_url)
    assert (old.revision, new.revision) == (5, 6)

    newer = await store(db_url, new)
    late = await store(db_url, old)
    assert (newer.version, newer.outcome) == (2, "new")
    assert (late.version, late.outcome) == (2, "superseded")
    assert (await store(db_url, new)).outcome == "unchanged"  # the same source again: nothing new

    assert sorted({r["version"] for r in await stored_reports(db_url)}) == [1, 2]
    async with await open_pool(db_url, max_size=1) as pool:
        download = await incident_file(pool, KEY, "md")
    assert download is not None
    content, origin = download
    assert origin == "stored v2"
    assert b"postmortem scheduled" in content and content == render_all(new)["md"].content
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        cur = await c.execute("SELECT report_version, incident_revision, enrichment_version FROM report_sources")
        assert await cur.fetchall() == [{"report_version": 2, "incident_revision": 6, "enrichment_version": 2}]


class CommitsDuringTheRead:
    """A real pool whose connections let another session commit `change` once, right after the reporter has read
    the incident's row and before it reads its timeline: as the correlator may commit at any moment."""

    def __init__(self, pool: Any, change: Callable[[], Awaitable[None]]) -> None:
        self.pool, self.change, self.done = pool, change, False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.pool.connection() as conn:
            execute = conn.execute

            async def execute_then_commit_elsewhere(query: Any, *args: Any, **kwargs: Any) -> Any:
                cursor = await execute(query, *args, **kwargs)
                if query == READ_QUERIES.incident_by_key and not self.done:
                    self.done = True
                    await self.change()
                return cursor

            conn.execute = execute_then_commit_elsewhere
            try:
                yield conn
            finally:
                del conn.execute


async def test_a_report_shows_one_moment_of_its_incident_however_its_reads_interleave_with_commits(
    db_url: str, publisher: Broker
) -> None:
    """A comment committed while the reporter reads the incident either is in the stored version, whose source is
    then the comment's revision, or is not and the source is the revision before: never the comment under the
    revision before it, which would leave the reporter believing its reports current when they show a newer state."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        incident_id = await seed_incident(c)
    revision_before = (await load(db_url)).revision
    async with await open_pool(db_url, max_size=2) as pool:
        handler = ReportHandler(
            CommitsDuringTheRead(pool, lambda: comment(db_url, incident_id, "root cause: a failed NIC")),  # type: ignore[arg-type]
            publisher,
        )
        stored = await handler.render_and_store(KEY, IncidentEventType.resolved.value)
    assert stored is not None
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        cur = await c.execute("SELECT content, incident_revision FROM reports WHERE format = 'md'")
        [row] = await cur.fetchall()
    shows_comment = b"root cause: a failed NIC" in row["content"]
    assert row["incident_revision"] == (revision_before + 1 if shows_comment else revision_before)


async def test_reports_stored_before_sources_were_recorded_count_as_the_oldest(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        incident_id = await seed_incident(c)
        # As a reporter from before migration 0050 stored them: no source.
        for fmt in ("md", "xlsx", "json"):
            legacy = Rendered(fmt, b"legacy " + fmt.encode())
            await c.execute(
                "INSERT INTO reports (incident_id, version, format, content, sha256) VALUES (%s, 7, %s, %s, %s)",
                (incident_id, fmt, legacy.content, legacy.sha256),
            )
    async with await open_pool(db_url, max_size=1) as pool:
        assert await incident_file(pool, KEY, "xlsx") == (b"legacy xlsx", "stored v7")  # as stored, not rendered
    report = await load(db_url)
    stored = await store(db_url, report)
    assert (stored.version, stored.outcome) == (8, "new")
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        latest = await newest_report(c, KEY, "md")
    assert latest is not None and latest.version == 8 and latest.content == render_all(report)["md"].content
    # Version 7's stored XLSX is the newest XLSX row, but version 8 is the newest version: its workbook is served.
    async with await open_pool(db_url, max_size=1) as pool:
        download = await incident_file(pool, KEY, "xlsx")
    assert download is not None
    assert download == (incident_xlsx.render(report), "rendered from stored v8")


async def test_two_replicas_racing_leave_the_newest_state_as_the_latest_report(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reporter replicas (or two lanes of one): replica A starts rendering revision 5 and is slow; meanwhile the
    incident changes and replica B renders and stores revision 6. When A is done, nothing is stored and nothing is
    announced for it: the latest report and the last `report.ready` are revision 6's."""
    db_url = settings.database_url
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
        incident_id = await seed_incident(c)

    slow_revision = 5
    rendering_slowly, released = threading.Event(), threading.Event()

    def render_slowly_at_revision_5(report: IncidentReport) -> dict[str, Rendered]:
        # Runs in the rendering thread, so blocking here is what a long rendering does to its lane.
        if report.revision == slow_revision:
            rendering_slowly.set()
            released.wait(30)
        return render_all(report)

    monkeypatch.setattr(consumer, "render_all", render_slowly_at_revision_5)
    # Both replicas run in this one process: each rendering in a thread, as a large report's is, so that the blocked
    # one holds its lane and not the event loop.
    monkeypatch.setattr(consumer, "INLINE_RENDER_ALERTS", -1)
    superseded_before = REGISTRY.get_sample_value("vigil_report_versions_total", {"outcome": "superseded"}) or 0.0

    broker = Broker(settings.amqp_url, producer="reporter", retry_delays_ms=(100, 200))
    await broker.start()
    await asyncio.wait_for(broker.wait_connected(), 30)
    try:
        async with (
            await aio_pika.connect(settings.amqp_url) as connection,
            await open_pool(db_url, max_size=2) as pool_a,
            await open_pool(db_url, max_size=2) as pool_b,
        ):
            channel = await connection.channel()
            ready = await channel.declare_queue("test.report-ready", exclusive=True)
            await ready.bind(await channel.get_exchange(INCIDENTS_EXCHANGE), "report.ready.#")
            replica_a, replica_b = ReportHandler(pool_a, broker), ReportHandler(pool_b, broker)

            first = await replica_a.render_and_store(KEY, IncidentEventType.resolved.value)
            assert first is not None and first.version == 1
            await comment(db_url, incident_id, "root cause: a failed NIC")
            slow = asyncio.create_task(replica_a.render_and_store(KEY, IncidentEventType.resolved.value))
            assert await asyncio.to_thread(rendering_slowly.wait, 30)
            await comment(db_url, incident_id, "postmortem scheduled")
            newer = await replica_b.render_and_store(KEY, IncidentEventType.resolved.value)
            assert newer is not None and newer.version == 2
            released.set()
            assert await slow is None

            announced = [json.loads((await next_message(ready)).body)["data"]["report_version"] for _ in range(2)]
            await asyncio.sleep(0.5)
            assert await ready.get(fail=False, no_ack=True) is None
            assert announced == [1, 2]
            download = await incident_file(pool_b, KEY, "md")
    finally:
        released.set()
        await broker.close()

    assert download is not None
    content, origin = download
    assert origin == "stored v2" and b"postmortem scheduled" in content
    assert sorted({r["version"] for r in await stored_reports(db_url)}) == [1, 2]
    superseded = REGISTRY.get_sample_value("vigil_report_versions_total", {"outcome": "superseded"}) or 0.0
    assert superseded - superseded_before == 1
