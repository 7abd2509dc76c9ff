"""The correlator's part of incident signatures (migration 0065): rule, group labels and alert names, written with
the batch that announces an incident or brings it an alert of a new name, never for an incident held back."""

from __future__ import annotations

from pathlib import Path

import psycopg

from services.correlator.store import Q
from shared.config import Settings
from shared.signatures import Token, incident_tokens
from tests.correlator.harness import Harness, alert_envelope, correlator, count_is


async def stored_tokens(h: Harness, key: str) -> set[int]:
    rows = await h.query(
        "SELECT s.token FROM incident_signature_tokens s JOIN incidents i ON i.id = s.incident_id WHERE i.key = %s",
        key,
    )
    return {r["token"] for r in rows}


async def token_ids(h: Harness, tokens: set[Token]) -> set[int]:
    """The stored form of each token, by the database's own function (the writers' one definition)."""
    pairs = sorted(tokens)
    rows = await h.query(
        "SELECT signature_token(k, v) AS token FROM unnest(%s::text[], %s::text[]) AS t(k, v)",
        [k for k, _ in pairs],
        [v for _, v in pairs],
    )
    return {r["token"] for r in rows}


async def test_announced_incidents_get_rule_labels_and_every_alert_name(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send_in_order(alert_envelope("HostDown", "web-1"), alert_envelope("HighCpu", "web-1"))
        await h.settled(await count_is(h, 2))
        # A repeat and a resolve of a known name add nothing.
        await h.send_in_order(
            alert_envelope("HighCpu", "web-1"), alert_envelope("HostDown", "web-1", status="resolved")
        )
        [incident] = await h.incidents()
        wanted = incident_tokens("default", {"host": "web-1"}, ["HostDown", "HighCpu"])
        assert await stored_tokens(h, incident["key"]) == await token_ids(h, wanted)
        kinds = await h.query("SELECT kind, count(*) AS n FROM incident_signature_tokens GROUP BY kind ORDER BY kind")
        assert {r["kind"]: r["n"] for r in kinds} == {"alert": 2, "label": 1, "rule": 1}
        opened = await h.query("SELECT DISTINCT opened_at FROM incident_signature_tokens")
        assert [r["opened_at"] for r in opened] == [incident["opened_at"]]


async def test_a_held_back_incident_has_no_signature_until_announced_then_all_its_names(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h:
        # The `warnings` rule announces at three alerts; each batch here holds one of them.
        await h.send_in_order(alert_envelope("Warn0", severity="warning"), alert_envelope("Warn1", severity="warning"))
        await h.settled(await count_is(h, 2))
        [held] = await h.incidents()
        assert not held["announced"] and await stored_tokens(h, held["key"]) == set()
        await h.send_in_order(alert_envelope("Warn2", severity="warning"))
        await h.settled(await count_is(h, 3))
        [announced] = await h.incidents()
        assert announced["announced"]
        # The first two names came in batches before the announcement: read back from the alerts then.
        wanted = incident_tokens("warnings", {"host": "web-1"}, ["Warn0", "Warn1", "Warn2"])
        assert await stored_tokens(h, announced["key"]) == await token_ids(h, wanted)


async def test_the_statement_adds_nothing_for_an_incident_not_announced(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        await h.send_in_order(alert_envelope("Warn0", severity="warning"))
        [held] = await h.incidents()
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        params = {"announced": [held["id"]], "incident_ids": [held["id"]], "alertnames": ["Warn0"]}
        await conn.execute(Q.add_signature_tokens, params)
        row = await (await conn.execute("SELECT count(*) FROM incident_signature_tokens")).fetchone()
    assert row == (0,)
