"""The web's JSON API and pages against a real PostgreSQL and RabbitMQ: every route, its 401/403/404/422
answers, filters and pagination, sessions and CSRF, commands on the broker, live events, escaping."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from psycopg.types.json import Jsonb

from devstack.procs import free_port
from services.web import listing, lockout, store
from services.web.app import build_app
from shared.config import Settings
from shared.contracts import (
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentSnapshot,
    IncidentState,
    ReportReady,
    incident_routing_key,
)
from shared.db import open_pool
from shared.messaging import CORRELATOR_QUEUE, Broker
from tests.conftest import running
from tests.seed import T0, add_timeline, insert_alert, insert_incident
from tests.web.webapp import (
    PASSWORDS,
    READONLY_TOKEN,
    RESPONDER_TOKEN,
    Web,
    connect,
    form_csrf,
    login,
    serve_web,
    try_login,
    web_settings,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

API_ROUTES: list[tuple[str, str]] = [
    ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/INC-000001"),
    ("GET", "/api/v1/incidents/INC-000001/report.md"),
    ("GET", "/api/v1/incidents/INC-000001/report.xlsx"),
    ("GET", "/api/v1/incidents/INC-000001/report.json"),
    ("GET", "/api/v1/reports/audit.md?since=2026-11-01T00:00:00Z"),
    ("GET", "/api/v1/reports/audit.xlsx?since=2026-11-01T00:00:00Z"),
    ("GET", "/api/v1/reports/audit.json?since=2026-11-01T00:00:00Z"),
    ("GET", "/api/v1/insights"),
    ("POST", "/api/v1/incidents/INC-000001/ack"),
    ("POST", "/api/v1/incidents/INC-000001/resolve"),
    ("POST", "/api/v1/incidents/INC-000001/reopen"),
    ("POST", "/api/v1/incidents/INC-000001/comments"),
    ("GET", "/api/v1/stream"),
]


@pytest.fixture
async def web(settings: Settings, tmp_path: Path) -> Any:
    async with serve_web(web_settings(settings, tmp_path)) as running_web:
        yield running_web


async def seed_three(db_url: str) -> dict[str, int]:
    """Three incidents an hour apart: open critical on web-1, acknowledged warning on db-1, resolved on web-2."""
    async with await connect(db_url) as conn:
        a = await insert_incident(conn, number=1, title="HostDown on web-1", opened_at=T0)
        await insert_alert(conn, a, labels={"job": "node", "env": "prod"}, annotations={"summary": "web-1 is down"})
        b = await insert_incident(
            conn,
            number=2,
            title="Disk filling on db-1",
            state="acknowledged",
            severity="warning",
            hosts=("db-1",),
            opened_at=T0 + timedelta(hours=1),
            acknowledged_at=T0 + timedelta(hours=1, minutes=5),
        )
        await insert_alert(
            conn, b, alertname="DiskFull", severity="warning", host="db-1", labels={"job": "node", "env": "stage"}
        )
        c = await insert_incident(
            conn,
            number=3,
            title="HTTP 5xx on web-2",
            state="resolved",
            severity="error",
            hosts=("web-2",),
            opened_at=T0 + timedelta(hours=2),
            resolved_at=T0 + timedelta(hours=3),
        )
        await insert_alert(conn, c, alertname="Http5xx", severity="error", host="web-2", labels={"job": "nginx"})
    return {"INC-000001": a, "INC-000002": b, "INC-000003": c}


async def keys(client: httpx.AsyncClient, query: str) -> list[str]:
    answer = await client.get(f"/api/v1/incidents?{query}")
    assert answer.status_code == 200, answer.text
    return [item["key"] for item in answer.json()["items"]]


async def read_commands(amqp_url: str, *, wait: float = 1.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got = []
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.get_queue(CORRELATOR_QUEUE.name, ensure=True)
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            got.append(message)
    return got


# --- authentication and authorisation ------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
async def test_every_api_route_needs_credentials(web: Web, method: str, path: str) -> None:
    async with web.client() as client:
        answer = await client.request(method, path)
        assert answer.status_code == 401
        assert answer.json()["status"] == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    async with web.client("wrong-token") as client:
        assert (await client.request(method, path)).status_code == 401


@pytest.mark.parametrize(("method", "path"), [r for r in API_ROUTES if r[0] == "POST"])
async def test_readonly_token_may_not_act(web: Web, db_url: str, method: str, path: str) -> None:
    await seed_three(db_url)
    async with web.client(READONLY_TOKEN) as client:
        answer = await client.request(method, path, json={"comment": "x"})
    assert answer.status_code == 403
    assert "may read" in answer.json()["message"] and answer.json()["error"] == "forbidden"
    assert await read_commands(web.settings.amqp_url, wait=0.3) == []


async def test_pages_redirect_to_login_and_keep_where_you_were_going(web: Web) -> None:
    async with web.client() as client:
        for path in ("/", "/incidents/INC-000001", "/audit", "/insights"):
            answer = await client.get(path)
            assert answer.status_code == 302
            assert answer.headers["Location"].startswith("/login?next=")
        login_page = await client.get("/login")
        assert login_page.status_code == 200 and 'name="password"' in login_page.text


async def test_login_sets_a_safe_cookie_and_logout_ends_the_session(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    await seed_three(db_url)
    async with serve_web(web_settings(settings, tmp_path, web_cookie_secure=True)) as web:
        # A client does not send Secure cookies back over plain http: hand them over as a browser on https would.
        async with web.client() as client:
            form = await client.get("/login?next=/incidents/INC-000001")
            csrf = form_csrf(form.text)
            login_cookie = {"Cookie": f"vigil_login_csrf={csrf}"}
            wrong = await client.post(
                "/login", data={"username": "alice", "password": "nope", "csrf": csrf}, headers=login_cookie
            )
            assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
            forged = await client.post(
                "/login",
                data={"username": "alice", "password": "alice-password-1", "csrf": "forged"},
                headers=login_cookie,
            )
            assert forged.status_code == 403
            answer = await client.post(
                "/login",
                data={
                    "username": "alice",
                    "password": "alice-password-1",
                    "csrf": csrf,
                    "next": "/incidents/INC-000001",
                },
                headers=login_cookie,
            )
            assert answer.status_code == 303 and answer.headers["Location"] == "/incidents/INC-000001"
            cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "vigil_session" in v)
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
            session = re.search(r"vigil_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
        # Secure cookies are not sent back over plain http by a client; send it by hand, as a browser on https.
        async with web.client(Cookie=f"vigil_session={session}") as client:
            page = await client.get("/incidents/INC-000001")
            assert page.status_code == 200 and "HostDown on web-1" in page.text
            csrf = form_csrf(page.text)
            assert (await client.post("/logout", data={"csrf": csrf})).status_code == 303
            assert (await client.get("/")).status_code == 302


async def test_a_name_with_too_many_failed_logins_is_locked_until_they_age_out(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    limited = web_settings(settings, tmp_path, web_login_max_failures=3, web_login_lockout_s=600)
    async with serve_web(limited) as web, web.client() as client:
        for _ in range(3):
            assert (await try_login(client, "alice", "guess")).status_code == 401
        # Locked: even the right password is refused, without being checked, until the failures age out.
        locked = await try_login(client, "alice", PASSWORDS["alice"])
        assert locked.status_code == 429, locked.text
        assert "Too many failed logins" in locked.text and "10 minutes" in locked.text
        assert 590 <= int(locked.headers["Retry-After"]) <= 600
        # Other names are not affected; names longer than any user's are refused and not stored.
        assert (await try_login(client, "victor", PASSWORDS["victor"])).status_code == 303
        assert (await try_login(client, "x" * 100_000, "guess")).status_code == 401
        async with await connect(db_url) as conn:
            longest = await (await conn.execute("SELECT max(length(username)) AS n FROM web_login_attempts")).fetchone()
            assert longest == {"n": 5}
            await conn.execute("UPDATE web_login_attempts SET at = at - interval '601 seconds'")
        assert (await try_login(client, "alice", PASSWORDS["alice"])).status_code == 303
        # A right password starts the name afresh: three more failures before the next lockout.
        for _ in range(3):
            assert (await try_login(client, "alice", "guess")).status_code == 401
        assert (await try_login(client, "alice", "guess")).status_code == 429
        metrics = (await client.get("/metrics")).text
    assert 'vigil_web_logins_total{outcome="locked"}' in metrics


async def test_parallel_guesses_cannot_slip_under_the_limit(db_url: str) -> None:
    # As from several web replicas at once: one connection each, all attempts in flight together.
    limit = lockout.Limit(max_failures=3, window_s=600)
    pool = await open_pool(db_url, min_size=12, max_size=12)
    try:
        attempts = await asyncio.gather(*(lockout.begin(pool, "alice", limit) for _ in range(12)))
        async with pool.connection() as conn:
            kept = await (await conn.execute("SELECT count(*) AS n FROM web_login_attempts")).fetchone()
    finally:
        await pool.close()
    assert sorted(wait is None for wait in attempts) == [False] * 9 + [True] * 3
    assert kept == {"n": 3}  # refused attempts are not failures


async def test_session_post_without_csrf_is_refused_and_with_it_sends_the_command(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client() as client:
        csrf = await login(client, "alice")
        refused = await client.post("/incidents/INC-000001/ack", data={})
        assert refused.status_code == 403 and refused.json()["field"] == "csrf"
        refused_api = await client.post("/api/v1/incidents/INC-000001/ack", json={})
        assert refused_api.status_code == 403
        sent = await client.post("/incidents/INC-000001/ack", data={"csrf": csrf})
        assert sent.status_code == 303 and sent.headers["Location"] == "/incidents/INC-000001?sent=acknowledge"
        api = await client.post(
            "/api/v1/incidents/INC-000001/comments", json={"comment": "on it"}, headers={"X-CSRF-Token": csrf}
        )
        assert api.status_code == 202
        page = await client.get(sent.headers["Location"])
        assert "Acknowledgement sent" in page.text
    messages = await read_commands(web.settings.amqp_url)
    bodies = [json.loads(m.body) for m in messages]
    assert [(b["type"], b["data"]["actor"]) for b in bodies] == [
        ("command.acknowledge", "alice"),
        ("command.comment", "alice"),
    ]
    assert bodies[1]["data"]["comment"] == "on it"


async def test_viewer_sees_no_buttons_and_may_not_act(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client() as client:
        csrf = await login(client, "victor")
        page = await client.get("/incidents/INC-000001")
        assert page.status_code == 200
        assert 'id="ack"' not in page.text and 'id="send-comment"' not in page.text
        answer = await client.post("/incidents/INC-000001/ack", data={"csrf": csrf})
        assert answer.status_code == 303 and "failed=403" in answer.headers["Location"]
        api = await client.post("/api/v1/incidents/INC-000001/ack", headers={"X-CSRF-Token": csrf})
        assert api.status_code == 403
    assert await read_commands(web.settings.amqp_url, wait=0.3) == []


async def test_trusted_header_is_honoured_only_when_configured(settings: Settings, tmp_path: Path, db_url: str) -> None:
    await seed_three(db_url)
    async with serve_web(web_settings(settings, tmp_path)) as web, web.client(**{"X-Forwarded-User": "alice"}) as c:
        assert (await c.get("/")).status_code == 302
    proxied = web_settings(
        settings, tmp_path, web_trusted_header="X-Forwarded-User", web_trusted_proxies=("127.0.0.1/32",)
    )
    async with serve_web(proxied) as web:
        async with web.client(**{"X-Forwarded-User": "alice"}) as client:
            page = await client.get("/incidents/INC-000001")
            assert page.status_code == 200 and 'id="ack"' in page.text
            csrf = form_csrf(page.text)
            assert (await client.post("/incidents/INC-000001/ack", data={"csrf": csrf})).status_code == 303
        async with web.client(**{"X-Forwarded-User": "somebody"}) as client:
            page = await client.get("/incidents/INC-000001")
            assert page.status_code == 200 and 'id="ack"' not in page.text  # not in the users file: a viewer
        async with await connect(db_url) as conn:
            before = (await (await conn.execute("SELECT count(*) AS n FROM web_sessions")).fetchone())["n"]  # type: ignore[index]
            async with web.client(**{"X-Forwarded-User": "alice"}) as client:
                for _ in range(3):
                    assert (await client.get("/api/v1/incidents")).status_code == 200
                assert (await client.post("/api/v1/incidents/INC-000001/ack")).status_code == 403  # no CSRF token
            after = (await (await conn.execute("SELECT count(*) AS n FROM web_sessions")).fetchone())["n"]  # type: ignore[index]
        assert after == before  # API calls through the proxy leave no session rows behind
        async with web.client() as client:
            assert (await client.get("/")).status_code == 302


async def test_anonymous_read_only_when_configured(settings: Settings, tmp_path: Path, db_url: str) -> None:
    await seed_three(db_url)
    async with serve_web(web_settings(settings, tmp_path, web_anonymous_read=True)) as web, web.client() as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/api/v1/incidents")).status_code == 200
        assert (await client.post("/api/v1/incidents/INC-000001/ack")).status_code == 401


# --- the incident list --------------------------------------------------------------------------


@pytest.mark.parametrize("sparse_alerts", [2_000, 0], ids=["collect-matching-alerts", "probe-each-incident"])
async def test_list_filters_newest_first_with_counts(
    web: Web, db_url: str, monkeypatch: pytest.MonkeyPatch, sparse_alerts: int
) -> None:
    # Both ways of answering a label matcher (chosen by how many alerts match) give the same answers.
    monkeypatch.setattr(store, "SPARSE_ALERTS", sparse_alerts)
    await seed_three(db_url)
    async with web.client(READONLY_TOKEN) as client:
        everything = await client.get("/api/v1/incidents")
        body = everything.json()
        assert [i["key"] for i in body["items"]] == ["INC-000003", "INC-000002", "INC-000001"]
        assert body["counts"] == {"open": 1, "acknowledged": 1, "resolved": 1} and body["counts_capped"] == []
        assert body["items"][2]["opened_at"] == "2026-11-01T03:00:00Z"
        assert await keys(client, "state=open,acknowledged") == ["INC-000002", "INC-000001"]
        assert await keys(client, "severity=warning") == ["INC-000002"]
        assert await keys(client, "host=web-2") == ["INC-000003"]
        assert await keys(client, "alertname=DiskFull") == ["INC-000002"]
        assert await keys(client, "matcher=job%3D%22node%22") == ["INC-000002", "INC-000001"]
        assert await keys(client, "matcher=env%3D~%22pro.*%22") == ["INC-000001"]
        assert await keys(client, "matcher=env%3D~%22pro%22") == []  # anchored like Alertmanager
        assert await keys(client, "matcher=env!%3D%22prod%22&matcher=job%3D%22node%22") == ["INC-000002"]
        assert await keys(client, "q=disk") == ["INC-000002"]
        assert await keys(client, "q=INC-000003") == ["INC-000003"]
        assert await keys(client, "q=inc-00000") == ["INC-000003", "INC-000002", "INC-000001"]  # case does not matter
        assert await keys(client, "q=%25") == []  # a literal percent sign, not a wildcard
        assert await keys(client, "since=2026-11-01T03:30:00Z&until=2026-11-01T04:30:00Z") == ["INC-000002"]
        filtered = (await client.get("/api/v1/incidents?severity=critical,warning")).json()
        assert filtered["counts"] == {"open": 1, "acknowledged": 1, "resolved": 0}


async def test_cursor_pagination_visits_every_incident_once(web: Web, db_url: str) -> None:
    async with await connect(db_url) as conn:
        for n in range(1, 24):
            # Pairs opened at the same moment: the id breaks the tie.
            await insert_incident(conn, number=n, opened_at=T0 + timedelta(minutes=n // 2))
    seen: list[str] = []
    async with web.client(READONLY_TOKEN) as client:
        cursor = None
        while True:
            query = "limit=5" + (f"&cursor={cursor}" if cursor else "")
            body = (await client.get(f"/api/v1/incidents?{query}")).json()
            seen += [i["key"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == 23 and len(set(seen)) == 23
    assert seen[0] == "INC-000023" and seen[-1] == "INC-000001"


async def test_counts_stop_at_the_cap_and_say_so(web: Web, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "COUNT_CAP", 10)
    monkeypatch.setattr(store, "COUNT_CAP", 10)
    async with await connect(db_url) as conn:
        for n in range(1, 13):
            await insert_incident(conn, number=n, opened_at=T0 + timedelta(minutes=n))
        await insert_incident(conn, number=13, state="resolved", resolved_at=T0)
    async with web.client(READONLY_TOKEN) as client:
        body = (await client.get("/api/v1/incidents")).json()
    assert body["counts"] == {"open": 10, "acknowledged": 0, "resolved": 1}
    assert body["counts_capped"] == ["open"]
    async with web.client() as client:
        await login(client, "victor")
        page = await client.get("/")
    assert 'data-count="open">10</span>+' in page.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=closed", "state"),
        ("severity=loud", "severity"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("since=tuesday", "since"),
        ("cursor=garbage!", "cursor"),
        ("matcher=job", "matcher"),
        ("matcher=job%3D~%22(%22", "matcher"),
        # Python's regex engine accepts this; PostgreSQL's refuses a repeat count above 255.
        ("matcher=job%3D~%22a%7B1,300%7D%22", "matcher"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_list_parameters_are_422_naming_the_field(web: Web, db_url: str, query: str, field: str) -> None:
    await seed_three(db_url)
    async with web.client(READONLY_TOKEN) as client:
        answer = await client.get(f"/api/v1/incidents?{query}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


async def test_list_page_shows_counts_filters_and_pages(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client() as client:
        await login(client, "victor")
        page = await client.get("/?state=open")
        assert page.status_code == 200
        assert 'data-key="INC-000001"' in page.text and 'data-key="INC-000002"' not in page.text
        assert 'data-count="acknowledged">1<' in page.text
        bad = await client.get("/?matcher=oops")
        assert bad.status_code == 422 and "matcher:" in bad.text


# --- the incident ------------------------------------------------------------------------------


async def test_incident_json_has_alerts_timeline_and_context(web: Web, db_url: str) -> None:
    ids = await seed_three(db_url)
    context = {
        "incident_key": "INC-000001",
        "window_start": "2026-11-01T02:00:00Z",
        "window_end": "2026-11-01T04:00:00Z",
        "generated_at": "2026-11-01T04:01:00Z",
        "complete": True,
        "metrics": [
            {
                "name": "cpu",
                "query": "cpu",
                "labels": {},
                "unit": "%",
                "points": [["2026-11-01T02:00:00Z", 10.0], ["2026-11-01T03:30:00Z", 95.0]],
            }
        ],
        "security_events": [{"at": "2026-11-01T03:10:00Z", "action": "ban", "ip": "203.0.113.9", "jail": "sshd"}],
    }
    async with await connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO enrichments (incident_id, incident_revision, complete, context) VALUES (%s, 1, true, %s)",
            (ids["INC-000001"], Jsonb(context)),
        )
    async with web.client(READONLY_TOKEN) as client:
        body = (await client.get("/api/v1/incidents/INC-000001")).json()
        assert body["key"] == "INC-000001" and body["state"] == "open"
        assert body["alerts"][0]["labels"]["env"] == "prod"
        assert body["alerts"][0]["annotations"] == {"summary": "web-1 is down"}
        assert [t["kind"] for t in body["timeline"]] == ["incident_opened", "alert_added"]
        assert body["context"]["security_events"][0]["ip"] == "203.0.113.9"
        assert (await client.get("/api/v1/incidents/INC-000099")).status_code == 404
        missing = await client.get("/api/v1/incidents/not-a-key")
        assert missing.status_code == 404 and missing.json()["field"] == "key"
    async with web.client() as client:
        await login(client, "alice")
        page = await client.get("/incidents/INC-000001")
        assert page.status_code == 200
        assert 'class="alert-start"' in page.text and "<svg" in page.text
        assert "203.0.113.9" in page.text
        assert (await client.get("/incidents/INC-000099")).status_code == 404


async def test_everything_from_an_alert_is_escaped(web: Web, db_url: str) -> None:
    async with await connect(db_url) as conn:
        incident = await insert_incident(conn, number=7, title="<img src=x onerror=alert(1)>")
        await insert_alert(
            conn,
            incident,
            labels={"job": '"><script>alert("label")</script>'},
            annotations={"summary": "<script>alert('annotation')</script>", "runbook_url": "javascript:alert(1)"},
            generator_url="javascript:alert(2)",
        )
        await add_timeline(conn, incident, T0, "comment", "bob", {"comment": "<b>bold</b>"})
    async with web.client() as client:
        await login(client, "alice")
        for path in ("/incidents/INC-000007", "/"):
            page = await client.get(path)
            assert "<script>alert" not in page.text and "<img src=x" not in page.text
            assert 'href="javascript:' not in page.text and "href='javascript:" not in page.text
        page = await client.get("/incidents/INC-000007")
        assert "&lt;script&gt;alert(&#39;annotation&#39;)&lt;/script&gt;" in page.text
        assert "&lt;b&gt;bold&lt;/b&gt;" in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
        script = re.search(r'<script src="(/static/app\.js\?v=[^"]+)"', page.text)
        assert script is not None  # served locally, no CDN
        asset = await client.get(script.group(1))
        assert asset.status_code == 200 and "immutable" in asset.headers["Cache-Control"]
        assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]


# --- commands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "command"),
    [
        ("ack", None, "command.acknowledge"),
        ("resolve", {"comment": "fixed the disk"}, "command.resolve"),
        ("reopen", {}, "command.reopen"),
        ("comments", {"comment": "looking"}, "command.comment"),
    ],
)
async def test_responder_token_sends_a_confirmed_command(
    web: Web, db_url: str, path: str, body: dict[str, str] | None, command: str
) -> None:
    await seed_three(db_url)
    async with web.client(RESPONDER_TOKEN) as client:
        answer = await client.post(f"/api/v1/incidents/INC-000002/{path}", json=body)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    messages = await read_commands(web.settings.amqp_url)
    assert len(messages) == 1
    envelope = json.loads(messages[0].body)
    assert envelope["id"] == accepted["command_id"]
    assert envelope["type"] == command and messages[0].routing_key == command
    assert envelope["data"]["key"] == "INC-000002" and envelope["data"]["actor"] == "api-token"
    assert envelope["data"]["comment"] == (body or {}).get("comment", "")


@pytest.mark.parametrize(
    ("path", "content", "status", "field"),
    [
        ("INC-000099/ack", b"{}", 404, "key"),
        ("nonsense/ack", b"{}", 404, "key"),
        ("INC-000001/comments", b'{"comment": "  "}', 422, "comment"),
        ("INC-000001/comments", b'{"comment": 5}', 422, "comment"),
        ("INC-000001/ack", b"not json", 422, "body"),
        ("INC-000001/ack", b"[1]", 422, "body"),
    ],
)
async def test_bad_commands_are_refused_and_nothing_is_sent(
    web: Web, db_url: str, path: str, content: bytes, status: int, field: str
) -> None:
    await seed_three(db_url)
    async with web.client(RESPONDER_TOKEN) as client:
        answer = await client.post(
            f"/api/v1/incidents/{path}", content=content, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == status
    assert answer.json()["field"] == field
    assert await read_commands(web.settings.amqp_url, wait=0.3) == []


async def test_broker_down_is_503_not_a_lie(settings: Settings, tmp_path: Path, db_url: str) -> None:
    await seed_three(db_url)
    # A broker that is not there: nothing listens on this port.
    unreachable = web_settings(settings, tmp_path, amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    async with running(build_app(unreachable), settings.web_port) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {RESPONDER_TOKEN}"}) as client:
            answer = await client.post("/api/v1/incidents/INC-000001/ack")
            assert answer.status_code == 503
            assert "did not take the command" in answer.json()["message"]
            # Reading goes on without the broker.
            assert (await client.get("/api/v1/incidents/INC-000001")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False


# --- reports ----------------------------------------------------------------------------------


async def test_reports_stored_or_rendered_on_demand(web: Web, db_url: str) -> None:
    ids = await seed_three(db_url)
    async with await connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO reports (incident_id, version, format, content, sha256) VALUES (%s, 1, 'md', %s, 'x'),"
            " (%s, 2, 'md', %s, 'y')",
            (ids["INC-000002"], b"# old version", ids["INC-000002"], b"# stored version 2"),
        )
    async with web.client(READONLY_TOKEN) as client:
        stored = await client.get("/api/v1/incidents/INC-000002/report.md")
        assert stored.status_code == 200 and stored.text == "# stored version 2"
        assert stored.headers["X-Vigil-Report"] == "stored v2"
        assert 'filename="INC-000002.md"' in stored.headers["Content-Disposition"]
        md = await client.get("/api/v1/incidents/INC-000001/report.md")
        assert md.status_code == 200 and md.headers["X-Vigil-Report"] == "rendered"
        assert "INC-000001" in md.text and "HostDown" in md.text
        xlsx = await client.get("/api/v1/incidents/INC-000001/report.xlsx")
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK" and xlsx.headers["X-Vigil-Report"] == "rendered"
        # Version 2 was stored with neither an XLSX nor a JSON to render one from: the incident is rendered instead.
        legacy = await client.get("/api/v1/incidents/INC-000002/report.xlsx")
        assert legacy.status_code == 200 and legacy.headers["X-Vigil-Report"] == "rendered"
        report = await client.get("/api/v1/incidents/INC-000001/report.json")
        assert report.status_code == 200 and "INC-000001" in report.text
        json.loads(report.text)
        assert (await client.get("/api/v1/incidents/INC-000042/report.md")).status_code == 404
        assert (await client.get("/api/v1/incidents/INC-000001/report.pdf")).status_code == 404


async def test_audit_reports_for_a_period(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client(READONLY_TOKEN) as client:
        md = await client.get("/api/v1/reports/audit.md?since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00Z")
        assert md.status_code == 200 and "INC-000002" in md.text
        xlsx = await client.get("/api/v1/reports/audit.xlsx?since=2026-11-01&until=2026-11-02")
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
        audit_json = await client.get("/api/v1/reports/audit.json?since=2026-11-01&until=2026-11-02")
        assert audit_json.status_code == 200 and audit_json.headers["Content-Type"] == "application/json"
        assert "audit-20261101-20261102.json" in audit_json.headers["Content-Disposition"]
        document = audit_json.json()
        assert "INC-000002" in [i["key"] for i in document["incidents"]]
        assert document["summary"]["incidents"] == len(document["incidents"])
        assert document["noise"]["funnel"]["incidents"] + document["summary"]["maintenance"] == len(
            document["incidents"]
        )
        for query, field in [
            ("", "since"),
            ("since=soon", "since"),
            ("since=2026-11-02&until=2026-11-01", "until"),
            ("since=2020-01-01&until=2026-01-01", "until"),
            ("since=2026-11-01&colour=red", "colour"),
        ]:
            answer = await client.get(f"/api/v1/reports/audit.md?{query}")
            assert answer.status_code == 422 and answer.json()["field"] == field, query


# --- live events and the API description --------------------------------------------------------


async def test_stream_delivers_incident_events(web: Web) -> None:
    snapshot = IncidentSnapshot(
        key="INC-000005",
        title="<b>x</b>",
        state=IncidentState.acknowledged,
        severity="critical",
        rule="default",
        group_labels={},
        hosts=["web-1"],
        alert_count=1,
        firing_count=1,
        revision=2,
        opened_at=T0,
        first_alert_at=T0,
        last_alert_at=T0,
    )
    event = IncidentEvent(incident=snapshot, change="acknowledged", actor="alice")
    broker = Broker(web.settings.amqp_url, producer="test")
    await broker.start()
    await broker.wait_connected()
    try:
        async with web.client(RESPONDER_TOKEN) as client, client.stream("GET", "/api/v1/stream") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            await broker.publish(
                INCIDENTS_EXCHANGE,
                incident_routing_key("incident.acknowledged", "critical"),
                Envelope(type="incident.acknowledged", producer="test", data=event),
            )
            data = None
            async with asyncio.timeout(10):
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        data = json.loads(line[6:])
                        break
    finally:
        await broker.close()
    assert data is not None
    assert data["key"] == "INC-000005" and data["state"] == "acknowledged" and data["actor"] == "alice"


async def test_the_live_queue_is_bound_only_while_someone_watches(web: Web) -> None:
    # `report.ready.*` reaches no service queue: only a live view's, which binds `#`. Published as mandatory, it comes
    # back unroutable exactly when no web process is listening: in a storm with no browser open, the web decodes
    # nothing and RabbitMQ copies nothing to it.
    connection = await aio_pika.connect(web.settings.amqp_url)
    try:
        channel = await connection.channel(on_return_raises=True)
        exchange = await channel.get_exchange(INCIDENTS_EXCHANGE)
        body = Envelope(
            type="report.ready",
            producer="test",
            data=ReportReady(key="INC-000001", report_version=1, formats=["md"]),
        ).model_dump_json()

        async def routed() -> bool:
            try:
                # A message id: what the client matches a returned message to its publish by.
                message = aio_pika.Message(body.encode(), message_id=str(uuid.uuid4()))
                await exchange.publish(message, "report.ready.info", mandatory=True)
            except aio_pika.exceptions.PublishError:
                return False
            return True

        async def settles_to(expected: bool) -> None:
            async with asyncio.timeout(10):
                while await routed() != expected:
                    await asyncio.sleep(0.1)

        await settles_to(False)
        async with web.client(RESPONDER_TOKEN) as client, client.stream("GET", "/api/v1/stream") as stream:
            assert stream.status_code == 200
            assert await routed()  # bound before the stream started
        await settles_to(False)
    finally:
        await connection.close()


async def test_openapi_documents_every_api_route(web: Web) -> None:
    async with web.client() as client:
        doc = (await client.get("/api/v1/openapi.json")).json()
    app = build_app(web.settings)
    documented = [path.replace("{key}", "INC-000001").replace("{id}", "1") for path in doc["paths"]]
    checked = 0
    for resource in app.router.resources():
        info = resource.get_info()
        pattern = info.get("pattern") or re.compile(re.escape(info.get("path", "")) + "$")
        if not resource.canonical.startswith("/api/v1/") or resource.canonical == "/api/v1/openapi.json":
            continue
        checked += 1
        assert any(pattern.match(path) for path in documented), resource.canonical
    assert checked >= 7
    assert doc["openapi"].startswith("3.")


async def test_metrics_name_routes_not_paths(web: Web, db_url: str) -> None:
    await seed_three(db_url)
    async with web.client(RESPONDER_TOKEN) as client:
        assert (await client.get("/api/v1/incidents/INC-000002")).status_code == 200
        assert (await client.post("/api/v1/incidents/INC-000002/ack")).status_code == 202
        metrics = (await client.get("/metrics")).text
    assert 'vigil_web_request_seconds_count{method="GET",route="/api/v1/incidents/{key}",status="200"}' in metrics
    assert "INC-000002" not in metrics
    assert 'vigil_web_commands_total{action="acknowledge",outcome="sent"}' in metrics
    assert "vigil_web_live_clients" in metrics
