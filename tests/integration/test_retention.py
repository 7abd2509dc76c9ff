"""Retention: the rules as pure functions, then the jobs against the real PostgreSQL. Incidents are seeded at known
times around now and retention runs with a short setting; exactly the expired incidents go, with every row under
them, and an audit of a period inside retention reads the same before and after."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.correlator import retention
from services.correlator.app import build_app as build_correlator
from services.correlator.batches import correlate_batch, sweep
from services.correlator.retention import (
    IncidentRow,
    OutboxRow,
    Plan,
    Policy,
    ProcessedRow,
    cutoffs,
    expired,
    outbox_step,
    plan,
    processed_to_delete,
)
from services.correlator.rules import load_rules
from services.correlator.store import Q as correlator_queries
from services.correlator.store import group_lock_id
from services.reporter import pruning, report_store
from services.reporter.app import build_app as build_reporter
from services.reporter.pruning import StoredVersion, made_at_resolve, to_prune
from services.reporter.versions import Source
from shared.config import Settings
from shared.contracts import RawEnvelope
from shared.db import open_pool
from shared.messaging import Delivery
from shared.reports import audit, audit_markdown, audit_xlsx
from shared.reports import stored as stored_reports
from shared.reports.rendering import Rendered
from tests.conftest import running
from tests.correlator.harness import RULES_YAML, alert_envelope, command_envelope, rules_file
from tests.reporter.report_seed import KEY, seed_incident
from tests.seed import add_timeline, insert_alert, insert_incident

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy(incidents=timedelta(days=30), messages=timedelta(days=7))


# --- the correlator's rules ---------------------------------------------------------------------------------------


def incident(state: str = "resolved", *, opened: float = -41, resolved: float | None = -40) -> IncidentRow:
    return IncidentRow(
        id=1,
        key="INC-000001",
        group_key="default:{}",
        state=state,
        opened_at=NOW + opened * DAY,
        resolved_at=None if resolved is None else NOW + resolved * DAY,
    )


def test_cutoffs_come_from_the_clock_given_and_the_settings() -> None:
    settings = Settings(retention_days=400, message_retention_days=7)
    assert Policy.from_settings(settings) == Policy(timedelta(days=400), timedelta(days=7))
    cut = cutoffs(NOW, POLICY)
    assert (cut.incidents, cut.messages) == (NOW - 30 * DAY, NOW - 7 * DAY)


def test_only_incidents_resolved_and_opened_before_the_cutoff_expire() -> None:
    cutoff = NOW - 30 * DAY
    assert expired(incident(), cutoff)
    assert not expired(incident(opened=-45, resolved=-20), cutoff)  # opened before, resolved inside: an audit needs it
    assert not expired(incident(opened=-10, resolved=-5), cutoff)
    for state in ("open", "acknowledged"):
        assert not expired(incident(state, opened=-100, resolved=None), cutoff)
    # Never unresolved, whatever resolved_at says (a reopened incident has none, but do not trust that alone).
    assert not expired(incident("open", opened=-100, resolved=-90), cutoff)
    assert not expired(incident("resolved", opened=-100, resolved=None), cutoff)
    # Clocks disagree: "resolved" before it opened. Opened inside retention, so an audit of that period lists it.
    assert not expired(incident(opened=-10, resolved=-31), cutoff)
    assert not expired(incident(opened=-31, resolved=-30), cutoff)  # resolved exactly at the cutoff: not before it


def test_plan_takes_whole_incidents_oldest_first_within_the_budget() -> None:
    assert plan([(1, 10), (2, 20), (3, 30)], 100) == Plan(whole=(1, 2, 3))
    assert plan([(1, 10), (2, 20), (3, 30)], 40) == Plan(whole=(1, 2))  # 11 + 21 rows, the third would pass 40
    # A big one is not overtaken by the small ones after it: it goes alone, partly, in the next transactions.
    assert plan([(1, 10), (2, 5000), (3, 1)], 1000) == Plan(whole=(1,))
    assert plan([(2, 5000), (3, 1)], 1000) == Plan(partial=2)
    assert plan([(2, 999)], 1000) == Plan(whole=(2,))
    assert plan([(2, 1000)], 1000) == Plan(partial=2)
    assert plan([], 1000) == Plan()
    with pytest.raises(ValueError, match="budget"):
        plan([(1, 0)], 0)


def test_outbox_rows_go_once_published_before_the_cutoff_and_the_walk_stops_at_young_rows() -> None:
    cutoff = NOW - 7 * DAY
    old, young = NOW - 10 * DAY, NOW - DAY
    rows = [
        OutboxRow(1, old, old),
        OutboxRow(2, old, None),  # never published: an event not delivered yet stays, however old
        OutboxRow(3, old, young),  # published only recently (the broker was away): its week starts then
        OutboxRow(4, old, old + timedelta(seconds=2)),
        OutboxRow(5, young, young),
        OutboxRow(6, old, old),  # after a young row: left to a later pass
    ]
    step = outbox_step(rows, cutoff, after=0, limit=6)
    assert step == retention.OutboxStep(delete=(1, 4), after=4, done=True)
    step = outbox_step(rows[:4], cutoff, after=0, limit=4)
    assert step == retention.OutboxStep(delete=(1, 4), after=4, done=False)  # a full batch: read on from 4
    assert outbox_step([], cutoff, after=9, limit=10) == retention.OutboxStep(delete=(), after=9, done=True)


def test_processed_message_ids_go_after_the_message_retention() -> None:
    ids = [uuid.uuid4() for _ in range(2)]
    rows = [ProcessedRow("correlator", ids[0], NOW - 8 * DAY), ProcessedRow("correlator", ids[1], NOW - 6 * DAY)]
    assert processed_to_delete(rows, NOW - 7 * DAY) == [("correlator", ids[0])]


# --- the reporter's rule ------------------------------------------------------------------------------------------

ALL = frozenset({"md", "xlsx", "json"})


def versions(*states: str | None, formats: frozenset[str] = ALL) -> list[StoredVersion]:
    return [StoredVersion(n, formats, state) for n, state in enumerate(states, 1)]


def pruned_versions(vs: list[StoredVersion]) -> list[int]:
    return sorted({v for v, _ in to_prune(vs)})


def test_open_incident_keeps_only_its_newest_version() -> None:
    assert pruned_versions(versions("open", "open", "acknowledged")) == [1, 2]
    assert to_prune(versions("open")) == []
    assert to_prune([]) == []


def test_the_version_made_at_the_resolve_is_kept_beside_the_newest() -> None:
    # Resolved at v3; v4 added the final enrichment; v5 a comment.
    vs = versions("open", "open", "resolved", "resolved", "resolved")
    assert made_at_resolve(vs) == [vs[2]]
    assert pruned_versions(vs) == [1, 2, 4]
    assert sorted(to_prune(vs)) == [(v, f) for v in (1, 2, 4) for f in sorted(ALL)]


def test_after_a_reopen_the_last_resolve_is_kept_and_after_a_second_resolve_only_that_one() -> None:
    assert pruned_versions(versions("open", "resolved", "resolved", "open", "open")) == [1, 3, 4]
    assert pruned_versions(versions("open", "resolved", "open", "resolved", "resolved")) == [1, 2, 3]
    assert made_at_resolve(versions("open", "open")) == []


def test_versions_of_unknown_state_are_kept() -> None:
    # Stored before states were recorded, with no JSON to read it from: any of them may be the one made at resolve.
    assert pruned_versions(versions(None, None, "resolved", "open")) == []
    assert pruned_versions(versions("open", None, "open")) == [1]
    # The unknown version 4 may have been open (then 5 was made at the resolve) or resolved (then 3 was).
    vs = versions("open", "open", "resolved", None, "resolved", "resolved", "resolved")
    assert made_at_resolve(vs) == [vs[2], vs[4]]
    assert pruned_versions(vs) == [1, 2, 6]


def test_only_the_newest_version_is_kept_for_the_web_not_an_older_xlsx() -> None:
    # Versions 1 and 2 were stored with an XLSX; the reporter now stores Markdown and JSON, and the web renders the
    # newest version's XLSX from its JSON: an older version's workbook is out of date and never served.
    stored_now = frozenset({"md", "json"})
    vs = [StoredVersion(1, ALL, "open"), StoredVersion(2, ALL, "open"), StoredVersion(3, stored_now, "open")]
    assert to_prune(vs) == [(v, f) for v in (1, 2) for f in sorted(ALL)]
    # The version made at the resolve is kept whole, its XLSX included.
    assert to_prune([StoredVersion(1, ALL, "resolved"), StoredVersion(2, stored_now, "resolved")]) == []


# --- the correlator's job against PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with await open_pool(db_url, max_size=3) as p:
        yield p


async def connect(db_url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True)


async def seed_full_incident(
    conn: psycopg.AsyncConnection[Any],
    number: int,
    *,
    state: str,
    opened: datetime,
    resolved: datetime | None = None,
    alerts: int = 3,
) -> int:
    """An incident with alerts, timeline, an enrichment, two report versions and its report source."""
    incident_id = await insert_incident(
        conn,
        number=number,
        state=state,
        opened_at=opened,
        resolved_at=resolved,
        hosts=(f"host-{number}",),
        acknowledged_at=opened + timedelta(minutes=5) if state != "open" else None,
    )
    if alerts > 100:
        # Big storms through COPY: one timeline entry per alert, as the correlator writes them.
        async with conn.cursor() as cur:
            async with cur.copy(
                "COPY alerts (incident_id, fingerprint, starts_at, status, alertname, severity, host, labels,"
                " first_seen_at, last_seen_at) FROM STDIN"
            ) as copy:
                for n in range(alerts):
                    labels = {"alertname": f"Storm{n}", "host": f"host-{number}"}
                    row = (incident_id, f"{number:06d}{n:010x}", opened, "resolved", f"Storm{n}", "warning")
                    await copy.write_row((*row, f"host-{number}", Jsonb(labels), opened, opened))
            async with cur.copy("COPY incident_timeline (incident_id, at, kind, detail) FROM STDIN") as copy:
                for n in range(alerts):
                    await copy.write_row((incident_id, opened, "alert_added", Jsonb({"n": n})))
        await conn.execute("UPDATE incidents SET alert_count = %s WHERE id = %s", (alerts, incident_id))
    else:
        for n in range(alerts):
            await insert_alert(
                conn, incident_id, alertname=f"Alert{n}", host=f"host-{number}", starts_at=opened + n * timedelta(0, 60)
            )
    if resolved is not None:
        await add_timeline(conn, incident_id, resolved, "incident_resolved", "correlator", {})
    # Its signature as the correlator writes it at the announcement: rule, group label, one token per alert name.
    await conn.execute(
        correlator_queries.add_signature_tokens, {"announced": [incident_id], "incident_ids": [], "alertnames": []}
    )
    await conn.execute(
        "INSERT INTO enrichments (incident_id, incident_revision, complete, context) VALUES (%s, 1, true, %s)",
        (incident_id, Jsonb({"metrics": []})),
    )
    for version in (1, 2):
        for fmt in ("md", "xlsx", "json"):
            await conn.execute(
                "INSERT INTO reports (incident_id, version, format, content, sha256, incident_state)"
                " VALUES (%s, %s, %s, %s, 'x', %s)",
                (incident_id, version, fmt, b"report", state),
            )
    await conn.execute(
        "INSERT INTO report_sources (incident_id, report_version, incident_revision) VALUES (%s, 2, 1)", (incident_id,)
    )
    return incident_id


CHILD_TABLES = ("alerts", "incident_timeline", "enrichments", "reports", "report_sources", "incident_signature_tokens")


async def rows_of(conn: psycopg.AsyncConnection[Any], incident_id: int) -> dict[str, int]:
    out = {}
    for table in CHILD_TABLES:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE incident_id = %s", (incident_id,))  # type: ignore[arg-type]
        row = await cur.fetchone()
        assert row is not None
        out[table] = row["n"]
    return out


def deleted_metric(table: str) -> float:
    return REGISTRY.get_sample_value("vigil_retention_deleted_rows_total", {"table": table}) or 0.0


async def seed_messages(conn: psycopg.AsyncConnection[Any]) -> dict[str, uuid.UUID]:
    now = datetime.now(UTC)
    old, young = now - 10 * DAY, now - DAY
    ids = {name: uuid.uuid4() for name in ("old", "old_unpublished", "late_published", "young")}
    for name, created, published in [
        ("old", old, old + timedelta(seconds=1)),
        ("old_unpublished", old, None),
        ("late_published", old, young),
        ("young", young, young),
    ]:
        await conn.execute(
            "INSERT INTO outbox (message_id, exchange, routing_key, body, created_at, published_at)"
            " VALUES (%s, 'vigil.incidents', 'incident.updated.warning', '{}', %s, %s)",
            (ids[name], created, published),
        )
    for name, at in [("old", old), ("young", young)]:
        await conn.execute(
            "INSERT INTO processed_messages (consumer, message_id, processed_at) VALUES ('correlator', %s, %s)",
            (ids[name], at),
        )
    # Silences: one ended before the incident horizon (30 days), one ended inside it, one ended yesterday.
    for silence, ended in [
        ("ended-long-ago", now - 31 * DAY),
        ("ended-inside", now - 29 * DAY),
        ("ended-yesterday", young),
    ]:
        await conn.execute(
            "INSERT INTO silences (id, starts_at, ends_at, state) VALUES (%s, %s, %s, 'expired')",
            (silence, ended - DAY, ended),
        )
    return ids


async def seed_world(conn: psycopg.AsyncConnection[Any], now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Incidents around a 30-day retention: those that go, and those that stay."""
    gone = {
        "expired": await seed_full_incident(conn, 1, state="resolved", opened=now - 41 * DAY, resolved=now - 40 * DAY),
        # A storm's incident: more rows than one transaction takes.
        "storm": await seed_full_incident(
            conn, 7, state="resolved", opened=now - 51 * DAY, resolved=now - 50 * DAY, alerts=2500
        ),
    }
    kept = {
        "opened_before_resolved_inside": await seed_full_incident(
            conn, 2, state="resolved", opened=now - 45 * DAY, resolved=now - 20 * DAY
        ),
        "open": await seed_full_incident(conn, 3, state="open", opened=now - 100 * DAY),
        "acknowledged": await seed_full_incident(conn, 4, state="acknowledged", opened=now - 60 * DAY),
        "clock_skew": await seed_full_incident(
            conn, 5, state="resolved", opened=now - 10 * DAY, resolved=now - 31 * DAY
        ),
        "recent": await seed_full_incident(conn, 6, state="resolved", opened=now - 10 * DAY, resolved=now - 5 * DAY),
    }
    return gone, kept


async def test_retention_deletes_exactly_the_expired_incidents_with_all_their_rows(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    now = datetime.now(UTC)
    async with await connect(db_url) as conn:
        gone, kept = await seed_world(conn, now)
        ids = await seed_messages(conn)
        before = {name: await rows_of(conn, i) for name, i in {**gone, **kept}.items()}
    metrics_before = {
        t: deleted_metric(t) for t in (*CHILD_TABLES, "incidents", "outbox", "processed_messages", "silences")
    }

    result = await retention.run_pass(pool, POLICY, batch_rows=1000, pause_s=0)

    expected = {
        "incidents": 2,
        "alerts": 3 + 2500,
        "incident_timeline": (1 + 3 + 1) + (1 + 2500 + 1),
        "enrichments": 2,
        "reports": 12,
        "report_sources": 2,
        "incident_signature_tokens": (1 + 1 + 3) + (1 + 1 + 2500),
        "outbox": 1,
        "processed_messages": 1,
        "silences": 1,
    }
    assert result.complete and dict(result.deleted) == expected
    assert {t: deleted_metric(t) - metrics_before[t] for t in expected} == expected
    async with await connect(db_url) as conn:
        cur = await conn.execute("SELECT id FROM incidents ORDER BY id")
        assert [r["id"] for r in await cur.fetchall()] == sorted(kept.values())
        for name, incident_id in gone.items():
            assert await rows_of(conn, incident_id) == dict.fromkeys(CHILD_TABLES, 0), name
        for name, incident_id in kept.items():
            assert await rows_of(conn, incident_id) == before[name], name
        cur = await conn.execute("SELECT message_id FROM outbox")
        assert {r["message_id"] for r in await cur.fetchall()} == {
            ids["old_unpublished"],
            ids["late_published"],
            ids["young"],
        }
        cur = await conn.execute("SELECT message_id FROM processed_messages")
        assert [r["message_id"] for r in await cur.fetchall()] == [ids["young"]]
        cur = await conn.execute("SELECT id FROM silences ORDER BY id")
        assert [r["id"] for r in await cur.fetchall()] == ["ended-inside", "ended-yesterday"]
        cur = await conn.execute("SELECT deleted_before FROM retention_horizon")
        horizon = (await cur.fetchone() or {})["deleted_before"]
    assert abs(horizon - (now - 30 * DAY)) < timedelta(minutes=1)

    again = await retention.run_pass(pool, POLICY, pause_s=0)
    assert again.complete and not again.deleted


def audit_of(db_url: str, since: datetime, until: datetime) -> tuple[dict[str, Any], audit.AuditReport, str, bytes]:
    """Every figure and table of the audit of [since, until) (but the ages of open incidents, which run with the
    clock), the report, and its Markdown and XLSX."""
    with psycopg.connect(db_url) as conn, audit.reading(conn, since, until) as report:
        figures = {
            "total": report.total,
            "still_open": report.still_open_count,
            "mtta": report.mtta,
            "mttr": report.mttr,
            **{
                name: getattr(report, name).rows()
                for name in ("incidents", "by_severity", "by_alertname", "by_host", "noisy", "flapping")
            },
            "still_open_rows": [row[:-1] for row in report.still_open.rows()],
        }
        markdown = audit_markdown.render(report)
        out = io.BytesIO()
        audit_xlsx.write(report, out)
    return figures, report, markdown, out.getvalue()


def xlsx_summary(content: bytes) -> dict[str, Any]:
    sheet = openpyxl.load_workbook(io.BytesIO(content))["Summary"]
    return {row[0].value: row[1].value for row in sheet.iter_rows(min_row=2)}


async def test_an_audit_inside_retention_reads_the_same_after_it_and_one_reaching_before_says_so(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    now = datetime.now(UTC)
    async with await connect(db_url) as conn:
        await seed_world(conn, now)
    inside = (now - 30 * DAY + timedelta(minutes=1), now + timedelta(minutes=1))
    reaching = (now - 60 * DAY, now + timedelta(minutes=1))
    inside_before, report, markdown, _ = audit_of(db_url, *inside)
    reaching_before, *_ = audit_of(db_url, *reaching)
    assert inside_before["total"] == 2  # opened inside: the one with the clock skew, and the recent one
    assert report.retention_horizon is None and report.complete
    assert "Retention horizon: none yet" in markdown

    await retention.run_pass(pool, POLICY, pause_s=0)

    inside_after, report, markdown, content = audit_of(db_url, *inside)
    assert inside_after == inside_before
    assert report.retention_horizon is not None and report.complete and report.complete_from == inside[0]
    assert "this period is complete" in markdown
    horizon = report.retention_horizon

    reaching_after, report, markdown, content = audit_of(db_url, *reaching)
    # The expired incidents (opened 41 and 51 days ago) are gone; the one opened 45 days ago but resolved 20 days ago
    # is not.
    keys = [row[0] for row in reaching_after["incidents"]]
    assert {row[0] for row in reaching_before["incidents"]} - set(keys) == {"INC-000001", "INC-000007"}
    assert "INC-000002" in keys
    assert not report.complete and report.complete_from == horizon
    assert "This period is only complete from" in markdown
    summary = xlsx_summary(content)
    naive = horizon.astimezone(UTC).replace(tzinfo=None)
    # Excel keeps times to the millisecond.
    assert abs(summary["Complete from (UTC)"] - naive) < timedelta(milliseconds=1)
    assert summary["Retention horizon (UTC)"] == summary["Complete from (UTC)"]


def test_an_audit_is_complete_from_its_start_or_from_the_horizon() -> None:
    assert audit.complete_from(NOW, None) == NOW
    assert audit.complete_from(NOW, NOW - DAY) == NOW
    assert audit.complete_from(NOW - 2 * DAY, NOW - DAY) == NOW - DAY


async def test_a_big_incident_goes_over_several_small_transactions_its_own_row_last(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    now = datetime.now(UTC)
    async with await connect(db_url) as conn:
        storm = await seed_full_incident(
            conn, 1, state="resolved", opened=now - 51 * DAY, resolved=now - 50 * DAY, alerts=1200
        )
    steps: list[dict[str, int]] = []
    real = retention._incident_batch

    async def spy(*args: Any) -> Any:
        step = await real(*args)
        steps.append(dict(step.deleted))
        return step

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retention, "_incident_batch", spy)
        await retention.run_pass(pool, POLICY, batch_rows=500, pause_s=0)
    # 1,200 timeline entries + 2 (opened, resolved), 1,200 alerts, 1 enrichment, 6 reports, 1 source, 1,202 signature
    # tokens (rule, label, 1,200 alert names): 3,612 rows, 500 a transaction until the rest fits in one with the
    # incident's own row.
    assert [sum(s.values()) for s in steps] == [500] * 7 + [113, 0]
    assert all("incidents" not in s for s in steps[:7]) and steps[7] == {"alerts": 112, "incidents": 1}
    async with await connect(db_url) as conn:
        assert await rows_of(conn, storm) == dict.fromkeys(CHILD_TABLES, 0)


async def test_an_incident_whose_group_is_busy_is_left_for_the_next_pass(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    now = datetime.now(UTC)
    async with await connect(db_url) as conn:
        busy = await seed_full_incident(conn, 1, state="resolved", opened=now - 41 * DAY, resolved=now - 40 * DAY)
        other = await seed_full_incident(conn, 2, state="resolved", opened=now - 41 * DAY, resolved=now - 40 * DAY)
        cur = await conn.execute("SELECT group_key FROM incidents WHERE id = %s", (busy,))
        group_key = (await cur.fetchone() or {})["group_key"]
    async with await connect(db_url) as batch:
        # A correlator batch holding the group's lock (as lock_and_load takes it) for the length of the pass.
        async with batch.transaction():
            await batch.execute("SELECT pg_advisory_xact_lock(%s)", (group_lock_id(group_key),))
            first = await retention.run_pass(pool, POLICY, pause_s=0)
        assert first.deleted["incidents"] == 1
        async with await connect(db_url) as conn:
            cur = await conn.execute("SELECT id FROM incidents")
            assert [r["id"] for r in await cur.fetchall()] == [busy]
    second = await retention.run_pass(pool, POLICY, pause_s=0)
    assert second.deleted["incidents"] == 1
    assert other != busy


async def test_another_replica_deleting_ends_the_pass(pool: AsyncConnectionPool, db_url: str) -> None:
    now = datetime.now(UTC)
    async with await connect(db_url) as conn:
        await seed_full_incident(conn, 1, state="resolved", opened=now - 41 * DAY, resolved=now - 40 * DAY)
    async with await connect(db_url) as other:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock(%s)", (retention.RETENTION_LOCK,))
            result = await retention.run_pass(pool, POLICY, pause_s=0)
    assert not result.complete and not result.deleted
    assert (await retention.run_pass(pool, POLICY, pause_s=0)).deleted["incidents"] == 1


def delivery(envelope: Any) -> Delivery:
    return Delivery(RawEnvelope.model_validate_json(envelope.model_dump_json(by_alias=True)), None, 0)  # type: ignore[arg-type]


async def test_an_incident_made_by_the_correlator_goes_whole_and_its_group_works_on(
    pool: AsyncConnectionPool, db_url: str, tmp_path: Path
) -> None:
    """Through the real correlator: an incident opened, acknowledged and resolved 40 days ago goes with its alerts and
    timeline; its events stay in the outbox until published (and then age out on their own); the same host firing
    now opens a new incident."""
    rules = load_rules(rules_file(tmp_path, RULES_YAML))
    long_ago = datetime.now(UTC) - 40 * DAY
    fired = alert_envelope(starts_at=long_ago, received_at=long_ago)
    await correlate_batch(pool, rules, [delivery(fired)])
    await correlate_batch(pool, rules, [delivery(command_envelope("INC-000001", "acknowledge"))])
    resolved = alert_envelope(status="resolved", starts_at=long_ago, received_at=long_ago + timedelta(minutes=2))
    await correlate_batch(pool, rules, [delivery(resolved)])
    await sweep(pool, rules, long_ago + timedelta(minutes=10))
    async with await connect(db_url) as conn:
        cur = await conn.execute("SELECT id, state, resolved_at FROM incidents")
        [old] = await cur.fetchall()
        assert old["state"] == "resolved" and old["resolved_at"] == long_ago + timedelta(minutes=10)
        cur = await conn.execute("SELECT count(*) AS n FROM outbox")
        events = (await cur.fetchone() or {})["n"]
    assert events >= 3

    result = await retention.run_pass(pool, POLICY, pause_s=0)
    assert (result.deleted["incidents"], result.deleted["alerts"]) == (1, 1)
    async with await connect(db_url) as conn:
        assert await rows_of(conn, old["id"]) == dict.fromkeys(CHILD_TABLES, 0)
        cur = await conn.execute("SELECT count(*) AS n FROM outbox")
        assert (await cur.fetchone() or {})["n"] == events  # never published: not the retention's to drop

    now = datetime.now(UTC)
    await correlate_batch(pool, rules, [delivery(alert_envelope(starts_at=now, received_at=now))])
    async with await connect(db_url) as conn:
        cur = await conn.execute("SELECT key, state, alert_count FROM incidents")
        assert await cur.fetchall() == [{"key": "INC-000002", "state": "open", "alert_count": 1}]


async def test_the_correlator_runs_retention_in_the_background_and_counts_it(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"correlation_rules": rules_file(tmp_path), "retention_days": 30, "message_retention_days": 7}
    )
    now = datetime.now(UTC)
    async with await connect(settings.database_url) as conn:
        await seed_full_incident(conn, 1, state="resolved", opened=now - 41 * DAY, resolved=now - 40 * DAY)
    before = deleted_metric("incidents")
    app = build_correlator(settings, sweep_interval_s=3600, retention_interval_s=0.2)
    async with running(app, settings.correlator_port) as url:
        for _ in range(100):
            async with await connect(settings.database_url) as conn:
                cur = await conn.execute("SELECT count(*) AS n FROM incidents")
                if (await cur.fetchone() or {})["n"] == 0:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("retention did not run")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text
    assert deleted_metric("incidents") - before == 1
    assert 'vigil_retention_deleted_rows_total{table="incidents"}' in metrics
    assert 'vigil_retention_passes_total{outcome="done"}' in metrics


# --- the reporter's job against PostgreSQL --------------------------------------------------------------------------


async def store_version(db_url: str, revision: int, state: str) -> int:
    rendered = {fmt: Rendered(fmt, f"{fmt} r{revision} {state}".encode()) for fmt in ("md", "xlsx", "json")}
    async with await connect(db_url) as conn:
        stored = await report_store.store(conn, KEY, rendered, Source(revision, None), state=state)
    assert stored is not None and stored.new
    return stored.version


async def stored_versions(db_url: str) -> dict[int, list[str]]:
    async with await connect(db_url) as conn:
        cur = await conn.execute("SELECT version, format FROM reports ORDER BY version, format")
        out: dict[int, list[str]] = {}
        for r in await cur.fetchall():
            out.setdefault(r["version"], []).append(r["format"])
        return out


def pruned_metric() -> float:
    return REGISTRY.get_sample_value("vigil_reports_pruned_total") or 0.0


async def test_pruning_keeps_the_newest_and_the_resolve_version_and_looks_again_after_a_new_one(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    async with await connect(db_url) as conn:
        await seed_incident(conn)
    for revision, state in enumerate(["open", "open", "resolved", "resolved"], 1):
        await store_version(db_url, revision, state)
    before = pruned_metric()

    result = await pruning.run_pass(pool, batch_rows=2, pause_s=0)  # two rows a transaction: several of them

    assert result.complete and result.rows == 6
    assert pruned_metric() - before == 6
    assert await stored_versions(db_url) == {3: ["json", "md", "xlsx"], 4: ["json", "md", "xlsx"]}
    assert (await pruning.run_pass(pool, pause_s=0)).rows == 0  # nothing new: the incident is not read again

    await store_version(db_url, 5, "open")  # reopened
    await store_version(db_url, 6, "open")
    assert (await pruning.run_pass(pool, pause_s=0)).rows == 6
    assert sorted(await stored_versions(db_url)) == [3, 6]  # the version made at the last resolve, and the newest
    async with await connect(db_url) as conn:
        latest = await stored_reports.newest(conn, KEY, "md")
    assert latest is not None and latest.version == 6 and latest.content == b"md r6 open"


async def test_versions_stored_before_states_were_recorded_tell_it_by_their_json_or_are_kept(
    pool: AsyncConnectionPool, db_url: str
) -> None:
    async with await connect(db_url) as conn:
        incident_id = await seed_incident(conn)
        legacy = [
            (1, "open", ("md", "xlsx", "json")),
            (2, "resolved", ("md", "xlsx", "json")),
            (3, "resolved", ("md", "xlsx", "json")),
            (4, None, ("md", "xlsx")),  # from before the JSON rendering: its state is not known
            (5, "resolved", ("md", "xlsx", "json")),
        ]
        for version, state, formats in legacy:
            for fmt in formats:
                content = b'{"summary":{"state":"%s"}}' % (state or "").encode() if fmt == "json" else b"legacy"
                await conn.execute(
                    "INSERT INTO reports (incident_id, version, format, content, sha256) VALUES (%s, %s, %s, %s, 'x')",
                    (incident_id, version, fmt, content),
                )
        await conn.execute(
            "INSERT INTO report_sources (incident_id, report_version, incident_revision) VALUES (%s, 5, 1)",
            (incident_id,),
        )
    await store_version(db_url, 9, "resolved")
    await pruning.run_pass(pool, pause_s=0)
    # Read from their JSON: 1 open, 2, 3 and 5 resolved; 4 unknown. The resolve was 2 if 4 was resolved, else 5;
    # 6 (stored now, resolved) is the newest.
    assert sorted(await stored_versions(db_url)) == [2, 4, 5, 6]


async def test_another_replica_pruning_ends_the_pass(pool: AsyncConnectionPool, db_url: str) -> None:
    async with await connect(db_url) as conn:
        await seed_incident(conn)
    for revision in (1, 2):
        await store_version(db_url, revision, "open")
    async with await connect(db_url) as other:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock(%s)", (pruning.PRUNE_LOCK,))
            result = await pruning.run_pass(pool, pause_s=0)
    assert not result.complete and result.rows == 0
    assert (await pruning.run_pass(pool, pause_s=0)).rows == 3


async def test_the_reporter_prunes_in_the_background(settings: Settings) -> None:
    async with await connect(settings.database_url) as conn:
        await seed_incident(conn)
    for revision in (1, 2, 3):
        await store_version(settings.database_url, revision, "open")
    async with running(build_reporter(settings, prune_interval_s=0.2), settings.reporter_port):
        for _ in range(100):
            if sorted(await stored_versions(settings.database_url)) == [3]:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the reporter did not prune")
