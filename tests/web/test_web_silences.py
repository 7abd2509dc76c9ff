"""Silencing from Vigil against Debian's real Alertmanager: the web makes the silence there (matchers from the
incident's group), sends the command that records it, expires it; refusals name the field or Alertmanager."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devstack.alertmanager import Alertmanager, alertmanager_available
from devstack.procs import free_port
from services.web.silencing import Refused, group_matchers, parse_duration
from shared.config import Settings
from tests.alertmanagers import running_alertmanager
from tests.seed import add_timeline
from tests.web.test_web import read_commands, seed_three
from tests.web.webapp import READONLY_TOKEN, RESPONDER_TOKEN, Web, form_csrf, login, serve_web, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

AM_CONFIG = """
route:
  receiver: blackhole
receivers:
  - name: blackhole
"""


@pytest.fixture
async def manager() -> AsyncIterator[Alertmanager]:
    if not alertmanager_available():
        pytest.skip("apt-get install prometheus-alertmanager")
    async with running_alertmanager(AM_CONFIG) as am:
        yield am


@pytest.fixture
async def web(settings: Settings, tmp_path: Path, manager: Alertmanager) -> AsyncIterator[Web]:
    async with serve_web(web_settings(settings, tmp_path, alertmanager_api_urls=(manager.url,))) as running_web:
        yield running_web


async def test_durations() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration("600") == timedelta(minutes=10)
    for bad in ("", "soon", "0s", 0, -5, "31d", True, None, "2x"):
        with pytest.raises(Refused):
            parse_duration(bad)


async def test_matchers_follow_the_group_labels() -> None:
    instance = {"alertname": "HostDown", "instance": "web-1:9100"}
    assert [str(m) for m in group_matchers({"host": "web-1"}, [instance])] == ['instance=~"web\\\\-1(:[0-9]+)?"']
    assert [str(m) for m in group_matchers({"host": "web-1"}, [{"host": "web-1"}])] == ['host="web-1"']
    grouped = {"alertname": "DiskFull", "jail": "sshd"}
    assert [str(m) for m in group_matchers(grouped, [instance])] == ['alertname="DiskFull"', 'jail="sshd"']


async def test_silence_from_vigil_is_made_in_alertmanager_and_recorded(
    web: Web, db_url: str, manager: Alertmanager
) -> None:
    await seed_three(db_url)
    async with web.client(RESPONDER_TOKEN) as client:
        answer = await client.post(
            "/api/v1/incidents/INC-000001/silence", json={"duration": "2h", "comment": "disk swap"}
        )
        assert answer.status_code == 201, answer.text
        made = answer.json()
        silences: list[dict[str, Any]] = await asyncio.to_thread(manager.api, "GET", "/api/v2/silences")
        [silence] = [s for s in silences if s["id"] == made["silence_id"]]
        assert silence["createdBy"] == "api-token" and silence["comment"] == "disk swap"
        assert silence["status"]["state"] == "active"
        assert silence["matchers"] == [
            {"name": "instance", "value": "web\\-1(:[0-9]+)?", "isRegex": True, "isEqual": True}
        ]
        # The alert the seeded incident holds is the one Alertmanager would now hold back.
        [command] = await read_commands(web.settings.amqp_url)
        envelope = json.loads(command.body)
        assert envelope["type"] == "command.silence" and envelope["id"] == made["command_id"]
        data = envelope["data"]
        assert (data["silence_id"], data["actor"], data["comment"]) == (made["silence_id"], "api-token", "disk swap")
        assert data["until"] is not None

        # Only the incident's own silences can be expired through it: until the correlator has recorded this one
        # (no correlator runs here), it is not the incident's.
        refused = await client.delete(f"/api/v1/incidents/INC-000001/silence/{made['silence_id']}")
        assert refused.status_code == 404 and refused.json()["field"] == "id"
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            cur = await conn.execute("SELECT id FROM incidents WHERE key = 'INC-000001'")
            (incident_id,) = await cur.fetchone() or (None,)
            detail = {"silence_id": made["silence_id"], "via": "vigil"}
            await add_timeline(conn, incident_id, datetime.now(UTC), "alert_silenced", "api-token", detail)
        expired = await client.delete(f"/api/v1/incidents/INC-000001/silence/{made['silence_id']}")
        assert expired.status_code == 202, expired.text
        silences = await asyncio.to_thread(manager.api, "GET", "/api/v2/silences")
        [silence] = [s for s in silences if s["id"] == made["silence_id"]]
        assert silence["status"]["state"] == "expired"
        [command] = await read_commands(web.settings.amqp_url)
        assert json.loads(command.body)["type"] == "command.unsilence"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"duration": "soon"}, 422, "duration"),
        ({}, 422, "duration"),
        ({"duration": "1h", "comment": 5}, 422, "comment"),
    ],
)
async def test_bad_silences_are_refused_naming_the_field(
    web: Web, db_url: str, body: dict[str, Any], status: int, field: str
) -> None:
    await seed_three(db_url)
    async with web.client(RESPONDER_TOKEN) as client:
        answer = await client.post("/api/v1/incidents/INC-000001/silence", json=body)
    assert answer.status_code == status and answer.json()["field"] == field
    assert await read_commands(web.settings.amqp_url, wait=0.3) == []


async def test_readonly_may_not_silence(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client(READONLY_TOKEN) as client:
        assert (await client.post("/api/v1/incidents/INC-000001/silence", json={"duration": "1h"})).status_code == 403
        assert (await client.delete("/api/v1/incidents/INC-000001/silence/abc")).status_code == 403
    async with web.client() as client:
        assert (await client.post("/api/v1/incidents/INC-000001/silence", json={"duration": "1h"})).status_code == 401


async def test_alertmanager_unreachable_is_502_naming_it(settings: Settings, tmp_path: Path, db_url: str) -> None:
    await seed_three(db_url)
    gone = f"http://127.0.0.1:{free_port()}"
    async with serve_web(web_settings(settings, tmp_path, alertmanager_api_urls=(gone,))) as web:
        async with web.client(RESPONDER_TOKEN) as client:
            answer = await client.post("/api/v1/incidents/INC-000001/silence", json={"duration": "1h"})
    assert answer.status_code == 502
    problem = answer.json()
    assert problem["error"] == "alertmanager_error" and gone in problem["message"]
    assert await read_commands(web.settings.amqp_url, wait=0.3) == []


async def test_page_form_silences(web: Web, db_url: str, manager: Alertmanager) -> None:
    await seed_three(db_url)
    async with web.client() as client:
        await login(client, "alice")
        page = await client.get("/incidents/INC-000001")
        assert 'id="silence-form"' in page.text
        sent = await client.post(
            "/incidents/INC-000001/silence", data={"csrf": form_csrf(page.text), "duration": "30m", "comment": "x"}
        )
        assert sent.status_code == 303 and sent.headers["Location"].endswith("sent=silence")
    silences = await asyncio.to_thread(manager.api, "GET", "/api/v2/silences")
    assert [s["createdBy"] for s in silences] == ["alice"]
    await read_commands(web.settings.amqp_url, wait=0.3)
