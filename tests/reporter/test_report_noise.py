"""Noise and alert quality in the period audit (shared/insights/noise.py) over seeded groups whose answers are worked
out by hand below: the funnel, the per-alert and per-rule figures, the held-back groups, the noisiest order and each
suggestion, in all three formats, and the same figures through the async reader the insights page uses."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import psycopg
import pytest
from markdown_it import MarkdownIt

from shared.insights import noise
from shared.reports import audit, audit_json, audit_markdown, audit_xlsx
from tests.reporter.markdown_tables import tables
from tests.seed import T0, add_timeline, insert_alert, insert_incident

SINCE, UNTIL = T0, T0 + timedelta(days=1)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Seed:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.number = 0

    async def incident(self, **kwargs: Any) -> int:
        self.number += 1
        return await insert_incident(self.conn, number=self.number, **kwargs)

    async def alert(self, incident_id: int, *, notifications: int, **kwargs: Any) -> int:
        alert_id = await insert_alert(self.conn, incident_id, **kwargs)
        await self.conn.execute("UPDATE alerts SET notifications = %s WHERE id = %s", (notifications, alert_id))
        return alert_id


async def seed_noise(conn: psycopg.AsyncConnection[Any]) -> None:
    s = Seed(conn)
    # DiskBlip: 5 incidents of one alert each on web-1, an hour apart, resolved by themselves after firing 30 s to
    # 10 min (median 90 s), 4 notifications each. One resolve came without an endsAt: its time firing ends at the
    # resolve's arrival (120 s).
    for k, firing_s in enumerate((30, 90, 600, 60, 120)):
        opened = at(60 * (k + 1))
        inc = await s.incident(state="resolved", opened_at=opened, resolved_at=opened + timedelta(minutes=15))
        alert = await s.alert(
            inc,
            notifications=4,
            alertname="DiskBlip",
            starts_at=opened,
            ends_at=opened + timedelta(seconds=firing_s),
            status="resolved",
        )
        if firing_s == 120:
            await conn.execute(
                "UPDATE alerts SET ends_at = NULL, resolved_at = starts_at + interval '120 seconds' WHERE id = %s",
                (alert,),
            )
    # NodeDown, rule `nodes`: 6 incidents of one alert each on 6 hosts, opened a minute apart (5 within 5 minutes of
    # another), all acknowledged, 2 notifications each.
    for k in range(6):
        opened = at(600 + k)
        host = f"node-{k}"
        inc = await s.incident(
            state="resolved",
            hosts=(host,),
            rule="nodes",
            opened_at=opened,
            acknowledged_at=opened + timedelta(minutes=2),
            resolved_at=opened + timedelta(minutes=40),
        )
        await s.alert(
            inc,
            notifications=2,
            alertname="NodeDown",
            host=host,
            starts_at=opened,
            ends_at=opened + timedelta(minutes=30),
            status="resolved",
        )
    # CertExpiry: 6 incidents of one alert each, two hours apart, firing 2 h; 5 resolved never acknowledged, and one
    # acknowledged once (the timeline says so) and then reopened (which cleared acknowledged_at): 1 notification each.
    for k in range(6):
        opened = at(700 + 120 * k)
        inc = await s.incident(
            state="resolved", hosts=(f"web-{k}",), opened_at=opened, resolved_at=opened + timedelta(hours=3)
        )
        await s.alert(
            inc,
            notifications=1,
            alertname="CertExpiry",
            host=f"web-{k}",
            starts_at=opened,
            ends_at=opened + timedelta(hours=2),
            status="resolved",
        )
        if k == 5:
            await add_timeline(conn, inc, opened + timedelta(minutes=3), "incident_acknowledged", "bob", {})
    # Flappy: 5 acknowledged incidents of two alerts each, 3 notifications per alert; 3 of them flapped: one still
    # marked, two whose mark has cleared but whose timeline says they started flapping.
    for k in range(5):
        opened = at(30 + 60 * k)
        inc = await s.incident(
            state="resolved",
            hosts=("app-1",),
            opened_at=opened,
            acknowledged_at=opened + timedelta(minutes=1),
            resolved_at=opened + timedelta(minutes=50),
            flapping=k == 0,
        )
        for j in range(2):
            await s.alert(
                inc,
                notifications=3,
                alertname="Flappy",
                host="app-1",
                labels={"n": str(j)},
                starts_at=opened + timedelta(seconds=j),
                ends_at=opened + timedelta(minutes=45),
                status="resolved",
            )
        if k in (1, 2):
            await add_timeline(conn, inc, opened + timedelta(minutes=5), "flapping_started", None, {})
    # Quiet: 2 incidents. One still open with a stale occurrence (last seen 60 s after it started: a lower bound of
    # 60 s) and one still firing since long ago (counts up to now: longer than any other); one resolved and
    # acknowledged, firing 300 s. Median of (60, 300, very long): 300 s.
    open_one = await s.incident(hosts=("db-1",), opened_at=at(900))
    await s.alert(open_one, notifications=1, alertname="Quiet", host="db-1", starts_at=at(900), status="stale")
    await s.alert(open_one, notifications=1, alertname="Quiet", host="db-2", starts_at=LONG_AGO, status="firing")
    closed = await s.incident(
        hosts=("db-1",), state="resolved", opened_at=at(960), acknowledged_at=at(961), resolved_at=at(980)
    )
    await s.alert(
        closed,
        notifications=1,
        alertname="Quiet",
        host="db-1",
        starts_at=at(960),
        ends_at=at(965),
        status="resolved",
    )
    # LowDisk, rule `warnings` (min_alerts 3): two groups held back with one alert each, 7 and 2 notifications.
    for k, notifications in enumerate((7, 2)):
        held = await s.incident(rule="warnings", hosts=(f"web-{k}",), opened_at=at(1000 + k))
        await conn.execute("UPDATE incidents SET announced = false, min_alerts = 3 WHERE id = %s", (held,))
        await s.alert(held, notifications=notifications, alertname="LowDisk", host=f"web-{k}", starts_at=at(1000 + k))
    # Left out: a maintenance incident (DiskBlip, 50 notifications), and one opened before the period (100).
    planned = await s.incident(state="resolved", opened_at=at(1100), resolved_at=at(1130))
    await conn.execute("UPDATE incidents SET maintenance = 'db-upgrade' WHERE id = %s", (planned,))
    await s.alert(
        planned, notifications=50, alertname="DiskBlip", starts_at=at(1100), ends_at=at(1101), status="resolved"
    )
    before = await s.incident(state="resolved", opened_at=at(-60), resolved_at=at(-50))
    await s.alert(
        before, notifications=100, alertname="DiskBlip", starts_at=at(-60), ends_at=at(-59), status="resolved"
    )


FUNNEL = noise.Funnel(
    notifications=20 + 12 + 6 + 30 + 3 + 9,
    occurrences=5 + 6 + 6 + 10 + 3 + 2,
    incidents=5 + 6 + 6 + 5 + 2,
    held_back=2,
    held_back_occurrences=2,
    held_back_notifications=9,
    maintenance_incidents=1,
    maintenance_held_back=0,
    maintenance_occurrences=1,
    maintenance_notifications=50,
)


def by_name(rows: list[noise.Quality]) -> dict[str, noise.Quality]:
    return {q.name: q for q in rows}


def check_by_alert(rows: list[noise.Quality]) -> None:
    assert [q.name for q in rows] == ["Flappy", "DiskBlip", "NodeDown", "LowDisk", "CertExpiry", "Quiet"]
    q = by_name(rows)
    figures = {
        name: (
            r.rule,
            r.notifications,
            r.occurrences,
            r.incidents,
            r.held_back,
            r.unacknowledged,
            r.flapping,
            r.single_alert,
            r.clustered,
            r.hosts,
            r.not_resolved,
        )
        for name, r in q.items()
    }
    assert figures == {
        "Flappy": ("default", 30, 10, 5, 0, 0, 3, 0, 0, 1, 0),
        "DiskBlip": ("default", 20, 5, 5, 0, 5, 0, 5, 0, 1, 0),
        "NodeDown": ("nodes", 12, 6, 6, 0, 0, 0, 6, 5, 6, 0),
        "LowDisk": ("warnings", 9, 2, 0, 2, 0, 0, 0, 0, 2, 2),
        "CertExpiry": ("default", 6, 6, 6, 0, 5, 0, 6, 0, 6, 0),
        "Quiet": ("default", 3, 3, 2, 0, 0, 0, 1, 0, 2, 2),
    }
    assert q["DiskBlip"].median_firing_s == 90.0
    assert q["NodeDown"].median_firing_s == 1800.0
    assert q["Quiet"].median_firing_s == 300.0  # the stale one counts 60 s, the firing one far more
    assert q["Flappy"].flapping_share == 0.6 and q["DiskBlip"].unacknowledged_share == 1.0
    assert q["CertExpiry"].unacknowledged_share == pytest.approx(5 / 6)
    assert q["LowDisk"].unacknowledged_share is None  # no incident: held back only


def check_by_rule(rows: list[noise.Quality]) -> None:
    figures = [
        (r.name, r.notifications, r.occurrences, r.incidents, r.held_back, r.unacknowledged, r.flapping) for r in rows
    ]
    assert figures == [
        ("default", 30 + 20 + 6 + 3, 10 + 5 + 6 + 3, 5 + 5 + 6 + 2, 0, 5 + 5, 3),
        ("nodes", 12, 6, 6, 0, 0, 0),
        ("warnings", 9, 2, 0, 2, 0, 0),
    ]
    assert by_name(rows)["nodes"].clustered == 5


def check_noisiest(noisiest: list[noise.Noisy]) -> None:
    assert [(n.alert.name, n.suggestion.action) for n in noisiest] == [
        ("Flappy", "raise_for"),
        ("DiskBlip", "raise_for"),
        ("NodeDown", "group_by"),
        ("LowDisk", "none"),
        ("CertExpiry", "min_alerts"),
        ("Quiet", "none"),
    ]
    evidence = {n.alert.name: n.suggestion.evidence for n in noisiest}
    assert evidence["Flappy"] == "3 of 5 incidents flapped"
    assert evidence["DiskBlip"] == "median time firing 1m 30s; 5 of 5 incidents resolved without acknowledgement"
    assert evidence["NodeDown"] == (
        "6 of 6 incidents held this one alert; 5 of 6 opened within 5m 00s of another; on 6 hosts"
    )
    assert evidence["CertExpiry"] == ("6 of 6 incidents held this one alert; 5 of 6 resolved without acknowledgement")
    assert evidence["LowDisk"] == "0 incidents (fewer than 5)"
    assert "rule `nodes`" in noisiest[2].suggestion.text


async def test_noise_figures_of_a_seeded_period(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_noise(conn)
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.noise_funnel == FUNNEL
        assert report.noise_funnel.repeats == 80 - 32
        # The funnel's incidents are the audit's, maintenance apart.
        assert report.total == FUNNEL.incidents + FUNNEL.maintenance_incidents
        check_by_alert(list(report.noise_by_alert))
        check_by_rule(list(report.noise_by_rule))
        check_noisiest(report.noisiest)


async def test_the_insights_page_reads_the_same_figures(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_noise(conn)
    whole = await noise.read_noise(conn, SINCE, UNTIL)
    assert whole.funnel == FUNNEL
    check_by_alert(whole.by_alert)
    check_by_rule(whole.by_rule)
    check_noisiest(whole.noisiest)
    top = await noise.read_noisiest(conn, SINCE, UNTIL, top=2)
    assert [n.alert for n in top] == whole.by_alert[:2]


async def test_figures_are_the_stored_rows_sums(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    """What an auditor would recompute by hand from the tables: the same numbers."""
    await seed_noise(conn)
    cur = await conn.execute(
        """SELECT sum(a.notifications) AS n, count(*) AS m FROM alerts a JOIN incidents i ON i.id = a.incident_id
           WHERE i.opened_at >= %s AND i.opened_at < %s AND i.maintenance IS NULL""",
        (SINCE, UNTIL),
    )
    row = await cur.fetchone()
    assert row is not None
    funnel = noise.read_funnel_sync(reader, SINCE, UNTIL)
    assert (funnel.notifications, funnel.occurrences) == (row["n"], row["m"])


async def test_empty_period_has_an_empty_funnel(reader: psycopg.Connection[Any]) -> None:
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert report.noise_funnel == noise.Funnel()
        assert list(report.noise_by_alert) == [] and report.noisiest == []
        text = audit_markdown.render(report)
        document = json.loads(audit_json.render(report))
    assert "**0 notifications → 0 alert occurrences → 0 incidents**" in text
    assert document["noise"]["funnel"]["notifications"] == 0 and document["incidents"] == []


async def test_noise_in_markdown_xlsx_and_json(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed_noise(conn)
    out = io.BytesIO()
    with audit.reading(reader, SINCE, UNTIL) as report:
        text = audit_markdown.render(report)
        audit_xlsx.write(report, out)
        document = json.loads(audit_json.render(report))
    assert "**80 notifications → 32 alert occurrences → 24 incidents**, and 2 groups held back" in text
    every = tables(MarkdownIt("commonmark").enable("table").parse(text))
    found = {tuple(t[0]): t for t in every}
    noisiest = found[("#", "Alert", "Notifications", "Occurrences", "Incidents", "Suggestion", "Because")]
    assert [row[1] for row in noisiest[1:]] == ["Flappy", "DiskBlip", "NodeDown", "LowDisk", "CertExpiry", "Quiet"]
    assert noisiest[2][6] == "median time firing 1m 30s; 5 of 5 incidents resolved without acknowledgement"
    header, *rows = found[
        (
            "Alert",
            "Rule",
            "Notifications",
            "Occurrences",
            "Incidents",
            "Held back",
            "Unacknowledged",
            "Flapping",
            "Median firing",
            "Not resolved",
            "Hosts",
        )
    ]
    disk = dict(zip(header, rows[1], strict=True))
    assert disk["Unacknowledged"] == "5 (100%)" and disk["Median firing"] == "1m 30s" and disk["Notifications"] == "20"
    [funnel_table] = [dict(t[1:]) for t in every if ["Groups held back by min_alerts", "2"] in t]
    assert (
        funnel_table["Notifications"] == "80"
        and funnel_table["Repeats and resolves (past each occurrence's first)"] == "48"
    )

    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    sheet = {row[0].value: row[1].value for row in wb["Noise"].iter_rows(min_row=2)}
    assert sheet["Notifications"] == 80 and sheet["Maintenance notifications (left out)"] == 50
    top = [[c.value for c in row] for row in wb["Noisiest alerts"].iter_rows(min_row=2)]
    assert [(r[1], r[3], r[6]) for r in top][:3] == [
        ("Flappy", 30, "raise_for"),
        ("DiskBlip", 20, "raise_for"),
        ("NodeDown", 12, "group_by"),
    ]
    quality = [[c.value for c in row] for row in wb["Alert quality"].iter_rows(min_row=2)]
    assert [(r[0], r[1]) for r in quality] == [
        *[("alert", n) for n in ("Flappy", "DiskBlip", "NodeDown", "LowDisk", "CertExpiry", "Quiet")],
        ("rule", "default"),
        ("rule", "nodes"),
        ("rule", "warnings"),
    ]
    assert quality[1][8] == 100 and quality[1][15] == 1.5  # DiskBlip: 100 % unacknowledged, median 1.5 min

    assert document["schema_version"] == 1
    assert document["noise"]["funnel"] == {**{k: v for k, v in vars(FUNNEL).items()}, "repeats": 48}
    assert [n["name"] for n in document["noise"]["noisiest"]][:3] == ["Flappy", "DiskBlip", "NodeDown"]
    assert document["noise"]["noisiest"][2]["suggestion"]["action"] == "group_by"
    assert document["noise"]["by_rule"][0]["name"] == "default"
    assert len(document["incidents"]) == document["summary"]["incidents"] == 25
    assert document["since"] == "2026-11-01T03:00:00Z"
