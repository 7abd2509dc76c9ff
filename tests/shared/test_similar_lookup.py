"""The read model's similar-incident lookup (shared/readmodel/queries.sql `similar_incidents`) against the score's
definition (shared.signatures.similarity) on random signatures, and its bound: a token nearly every incident holds
does not make it read every incident."""

from __future__ import annotations

import random
import shutil
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services.correlator.store import Q as correlator_queries
from shared.db import list_migrations, migrate
from shared.readmodel import incidents
from shared.readmodel.queries import QUERIES
from shared.signatures import KIND_WEIGHTS, Token, incident_tokens, similarity
from tests.seed import T0, insert_alert, insert_incident

Signature = set[Token]


async def add_incidents(
    conn: psycopg.AsyncConnection[Any], signatures: list[Signature], *, announced: bool = True
) -> None:
    """Incidents #1.. opened an hour apart (the same hour for #n and #n+1 when n is odd: ties by id), each with its
    signature's tokens hashed by the database's own function."""
    for offset, signature in enumerate(signatures):
        number = offset + 1
        opened = T0 + timedelta(hours=number // 2)
        row = await (
            await conn.execute(
                "INSERT INTO incidents (key, rule, group_key, title, state, announced, opened_at, first_alert_at,"
                " last_alert_at) VALUES (%s, 'r', %s, 't', 'open', %s, %s, %s, %s) RETURNING id",
                (f"INC-{number:06d}", f"g{number}", announced, opened, opened, opened),
            )
        ).fetchone()
        assert row is not None
        pairs = sorted(signature)
        await conn.execute(
            "INSERT INTO incident_signature_tokens (incident_id, token, kind, opened_at)"
            " SELECT %s, signature_token(k, v), k, %s FROM unnest(%s::text[], %s::text[]) AS t(k, v)",
            (row["id"], opened, [k for k, _ in pairs], [v for _, v in pairs]),
        )


def expected(signatures: list[Signature], target: int, limit: int = 5) -> list[tuple[str, Fraction]]:
    """By definition: earlier incidents sharing more than the rule, closest first, then the later opened (the
    higher number: numbers follow opening order and ids)."""
    mine = signatures[target - 1]
    found = []
    for number in range(1, target):
        theirs = signatures[number - 1]
        if any(kind != "rule" for kind, _ in mine & theirs):
            found.append((similarity(mine, theirs), number))
    found.sort(key=lambda f: (-f[0], -f[1]))
    return [(f"INC-{number:06d}", score) for score, number in found[:limit]]


async def test_the_database_ranks_exactly_as_the_score_defines(db_url: str) -> None:
    rng = random.Random(16)

    def random_signature() -> Signature:
        return incident_tokens(
            rng.choice(["default", "db"]),
            {"host": f"h{rng.randrange(6)}", **({"job": rng.choice(["a", "b"])} if rng.random() < 0.5 else {})},
            rng.sample([f"Alert{i}" for i in range(5)], rng.randint(1, 3)),
            rng.sample([f"template {i} <num>" for i in range(8)], rng.randint(0, 4)),
        )

    signatures = [random_signature() for _ in range(80)]
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        await add_incidents(conn, signatures)
        ids = {r["key"]: r["id"] for r in await (await conn.execute("SELECT id, key FROM incidents")).fetchall()}
        compared = 0
        for target in range(2, 81):
            got = await incidents.similar(conn, ids[f"INC-{target:06d}"])
            want = expected(signatures, target)
            assert [(s.key, Fraction(s.shared, s.either)) for s in got] == want, target
            compared += len(want)
    # Ties of score (and of opening time, broken by id) did occur: the tie-breaks were exercised.
    assert compared > 300


async def test_a_common_token_reads_a_bounded_number_of_incidents(db_url: str) -> None:
    """3,000 earlier incidents share the label env=prod and the alert HighCpu; only #1 shares the host as well. It is
    found although thousands are more recent, and the lookup reads no table whole."""
    common = 3000
    target = incident_tokens("default", {"host": "web-1", "env": "prod"}, ["HighCpu"])
    twin = set(target)
    others = [incident_tokens("default", {"host": f"h{n}", "env": "prod"}, ["HighCpu"]) for n in range(2, common + 1)]
    signatures = [twin, *others, target]
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        await add_incidents(conn, signatures)
        # Timelines long with alerts and short with comments, as the correlator writes them.
        await conn.execute(
            "INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)"
            " SELECT i.id, i.opened_at + make_interval(secs => n),"
            " CASE WHEN n = 7 THEN 'comment' ELSE 'alert_added' END, 'alice', '{\"comment\": \"seen\"}'"
            " FROM incidents i CROSS JOIN generate_series(1, 20) AS n"
        )
        await conn.execute("ANALYZE")
        last = await (
            await conn.execute("SELECT id FROM incidents WHERE key = %s", (f"INC-{common + 1:06d}",))
        ).fetchone()
        assert last is not None
        got = await incidents.similar(conn, last["id"])
        # #1 (identical) first; then, of the 2,999 tied at 6/12, the most recent.
        assert [(s.key, Fraction(s.shared, s.either)) for s in got] == expected(signatures, common + 1)
        assert [s.key for s in got] == ["INC-000001", *(f"INC-{n:06d}" for n in range(common, common - 4, -1))]

        params = {
            "incident_id": last["id"],
            "kinds": list(KIND_WEIGHTS),
            "weights": list(KIND_WEIGHTS.values()),
            "max_probes": incidents.SIMILAR_MAX_PROBES,
            "per_token": incidents.SIMILAR_PER_TOKEN,
            "limit": 5,
        }
        plan = await (
            await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES.similar_incidents, params)
        ).fetchone()
    assert plan is not None
    nodes = list(walk(plan["QUERY PLAN"][0]["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert {n.get("Index Name") for n in nodes} >= {"incident_timeline_comments"}
    assert all(s.last_comment is not None and s.last_comment.text == "seen" for s in got)
    # Candidates: per probe (host, env, alert) at most SIMILAR_PER_TOKEN rows of the token index.
    probed = [n for n in nodes if n.get("Index Name") == "incident_signature_tokens_recent"]
    assert probed and sum(n["Actual Rows"] * n["Actual Loops"] for n in probed) <= 3 * incidents.SIMILAR_PER_TOKEN
    scored = sum(
        n["Actual Rows"] * n["Actual Loops"] for n in nodes if n.get("Index Name") == "incident_signature_tokens_pkey"
    )
    assert scored <= (3 * incidents.SIMILAR_PER_TOKEN + 1) * 4  # each candidate's four tokens, and the incident's


def walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


async def test_the_migration_signs_the_incidents_already_there_as_the_correlator_would(
    postgres: Any, tmp_path: Path
) -> None:
    """Migration 0065 on a database with incidents: announced ones get the correlator's tokens (rule, group labels,
    alert names), exactly the set its statement writes; one held back gets none."""
    before, through = tmp_path / "before", tmp_path / "through"
    before.mkdir()
    through.mkdir()
    for migration in list_migrations():
        if migration.version[:4] < "0065":
            shutil.copy(migration.path, before)
        if migration.version[:4] <= "0065":
            shutil.copy(migration.path, through)
    with psycopg.connect(postgres.admin_url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE signature_backfill")
    url = postgres.admin_url("signature_backfill")
    try:
        await migrate(url, before)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            first = await insert_incident(conn, number=1, group_labels={"host": "web-1", "env": "prod"})
            for name, host in (("HostDown", "web-1"), ("DiskFull", "web-1"), ("HostDown", "web-2")):
                await insert_alert(conn, first, alertname=name, host=host)
            second = await insert_incident(conn, number=2, rule="db")
            await insert_alert(conn, second, alertname="SlowQueries")
            held = await insert_incident(conn, number=3)
            await insert_alert(conn, held, host="web-3")
            await conn.execute("UPDATE incidents SET announced = false WHERE id = %s", (held,))
        assert await migrate(url, through) == ["0065_incident_signatures"]
        query = "SELECT incident_id, kind, token FROM incident_signature_tokens ORDER BY 1, 2, 3"
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            backfilled = await (await conn.execute(query)).fetchall()
            await conn.execute("DELETE FROM incident_signature_tokens")
            params = {"announced": [first, second, held], "incident_ids": [], "alertnames": []}
            await conn.execute(correlator_queries.add_signature_tokens, params)
            written = await (await conn.execute(query)).fetchall()
    finally:
        with psycopg.connect(postgres.admin_url(), autocommit=True) as admin:
            admin.execute("DROP DATABASE signature_backfill WITH (FORCE)")
    kinds = [(incident_id, kind) for incident_id, kind, _ in backfilled]
    firsts = [(first, "alert"), (first, "alert"), (first, "label"), (first, "label"), (first, "rule")]
    assert kinds == [*firsts, (second, "alert"), (second, "label"), (second, "rule")]
    assert backfilled == written
