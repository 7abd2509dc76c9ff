"""The web under load and with least privilege, against a real PostgreSQL and RabbitMQ: every query bounded by its
statement_timeout (503, never a 500, and the service stays healthy), at most so many live clients and audit exports
(503 with Retry-After), and the web logged in as a member of `vigil_web`, which reads incidents and writes only its
own tables. The web in these tests runs as such a login (`web_login`), as `make run` and docker-compose run it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from devstack.postgres import WEB_ROLE, Postgres, ensure_login, login_url
from devstack.procs import free_port
from devstack.throwaway import new_postgres, temp_root
from shared.config import Settings
from shared.db import MigrationError, list_migrations, migrate
from tests.seed import insert_alert, insert_incident
from tests.web.webapp import READONLY_TOKEN, RESPONDER_TOKEN, Web, connect, login, serve_web, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

WEB_LOGIN = "vigil_web_test_login"
AUDIT = "/api/v1/reports/audit.md?since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00Z"


@pytest.fixture(scope="session")
def web_login(postgres: Postgres) -> tuple[str, str]:
    """A login in role vigil_web (which the migrations made in the test cluster): what VIGIL_WEB_DATABASE_URL names.

    Every module that imports this fixture gets its own session-wide copy: each makes the same login with the same
    password (derived from the throwaway cluster's own), whichever runs first."""
    password = hashlib.sha256(f"{postgres.password}/{WEB_LOGIN}".encode()).hexdigest()[:32]
    ensure_login(postgres.admin_url(), WEB_LOGIN, password, WEB_ROLE)
    return WEB_LOGIN, password


@pytest.fixture
def role_url(db_url: str, web_login: tuple[str, str]) -> str:
    return login_url(db_url, *web_login)


def limited(settings: Settings, tmp_path: Path, role_url: str, **changes: Any) -> Settings:
    return web_settings(settings, tmp_path, web_database_url=role_url, **changes)


@contextlib.asynccontextmanager
async def locked_incidents(db_url: str) -> AsyncIterator[None]:
    """The incidents table locked by another session: every query of it waits, as behind a long migration."""
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await conn.execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await conn.rollback()


async def seed(db_url: str) -> None:
    async with await connect(db_url) as conn:
        first = await insert_incident(conn, number=1, title="HostDown on web-1")
        await insert_alert(conn, first)


# --- statement timeouts ---------------------------------------------------------------------------


def metric(text: str, series: str) -> float:
    """The value of one series in a /metrics page (0 when absent); counters are per process, so tests compare."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def test_a_query_past_its_timeout_is_a_503_and_the_web_stays_healthy(
    settings: Settings, tmp_path: Path, db_url: str, role_url: str
) -> None:
    await seed(db_url)
    timeouts = 'vigil_web_database_unanswered_total{reason="timeout"}'
    async with serve_web(limited(settings, tmp_path, role_url, web_statement_timeout_ms=300)) as web:
        async with web.client(RESPONDER_TOKEN) as api, web.client() as browser:
            await login(browser, "alice")
            before = metric((await api.get("/metrics")).text, timeouts)
            async with locked_incidents(db_url):
                started = time.monotonic()
                answer = await api.get("/api/v1/incidents")
                assert time.monotonic() - started < 3
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"] == "query_timeout" and "0.3 s" in answer.json()["message"]
                assert answer.headers["Retry-After"] == "5"
                page = await browser.get("/incidents/INC-000001")
                assert page.status_code == 503 and "did not answer within 0.3 s" in page.text
                assert page.headers["Content-Type"].startswith("text/html")
                # What does not read incidents is served meanwhile.
                assert (await api.get("/readyz")).status_code == 200
            # The lock gone, the same connections serve again: nothing was left broken.
            for _ in range(settings.database_pool_size + 1):
                assert (await api.get("/api/v1/incidents")).status_code == 200
            assert (await browser.get("/incidents/INC-000001")).status_code == 200
            assert metric((await api.get("/metrics")).text, timeouts) == before + 2


async def test_audit_exports_have_their_own_longer_timeout(
    settings: Settings, tmp_path: Path, db_url: str, role_url: str
) -> None:
    await seed(db_url)
    changes = {"web_statement_timeout_ms": 300, "web_audit_statement_timeout_ms": 2000}
    async with serve_web(limited(settings, tmp_path, role_url, **changes)) as web, web.client(READONLY_TOKEN) as api:
        async with locked_incidents(db_url):
            export = asyncio.create_task(api.get(AUDIT))
            assert (await api.get("/api/v1/incidents")).status_code == 503  # after 0.3 s; the export waits on
            await asyncio.sleep(0.3)
        answer = await export
        assert answer.status_code == 200 and "INC-000001" in answer.text
        async with locked_incidents(db_url):
            started = time.monotonic()
            timed_out = await api.get(AUDIT)
        assert 2 <= time.monotonic() - started < 6
        assert timed_out.status_code == 503 and timed_out.json()["error"] == "query_timeout"
        assert "longer than 2 s" in timed_out.json()["message"]
        assert (await api.get(AUDIT)).status_code == 200


# --- live clients and audit exports at once -----------------------------------------------------------


@dataclass
class LiveStream:
    response: httpx.Response
    # Held while the stream should stay open: an abandoned line iterator closes its connection when collected.
    lines: AsyncIterator[str]


async def open_stream(client: httpx.AsyncClient, stack: contextlib.AsyncExitStack) -> LiveStream:
    """Open the live stream and keep it open until `stack` closes; the first line is read when it answers 200."""
    response = await stack.enter_async_context(client.stream("GET", "/api/v1/stream"))
    lines = response.aiter_lines()
    if response.status_code == 200:
        assert await anext(lines) == "retry: 3000"
    else:
        await response.aread()
    return LiveStream(response, lines)


async def test_live_clients_past_the_cap_get_503_and_one_that_leaves_frees_its_place(
    settings: Settings, tmp_path: Path, role_url: str
) -> None:
    async with serve_web(limited(settings, tmp_path, role_url, web_max_live_clients=2)) as web:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(web.client(RESPONDER_TOKEN)) for _ in range(4)]
            first, second = [await open_stream(c, stack) for c in clients[:2]]
            assert (first.response.status_code, second.response.status_code) == (200, 200)
            refused = (await open_stream(clients[2], stack)).response
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
            assert refused.json()["error"] == "busy" and "2 live clients" in refused.json()["message"]
            await asyncio.sleep(2)  # the two stay connected: nobody frees a place but by leaving
            assert (await open_stream(clients[3], stack)).response.status_code == 503
            await first.response.aclose()  # the browser tab closed: its connection is gone
            async with asyncio.timeout(5):
                while (await open_stream(clients[3], stack)).response.status_code != 200:
                    await asyncio.sleep(0.2)
            assert metric((await clients[2].get("/metrics")).text, "vigil_web_live_clients") == 2


async def test_audit_exports_past_the_cap_get_503_at_once(
    settings: Settings, tmp_path: Path, db_url: str, role_url: str
) -> None:
    await seed(db_url)
    async with serve_web(limited(settings, tmp_path, role_url, web_max_audit_exports=1)) as web:
        async with web.client(READONLY_TOKEN) as api:
            async with locked_incidents(db_url):
                running = asyncio.create_task(api.get(AUDIT))
                await asyncio.sleep(0.5)  # it has its slot and waits for the lock
                started = time.monotonic()
                refused = await api.get(AUDIT.replace("audit.md", "audit.xlsx"))
                assert time.monotonic() - started < 1, "refused at once, not queued"
                assert refused.status_code == 503 and refused.headers["Retry-After"] == "10"
                assert refused.json()["error"] == "busy"
            done = await running
            assert done.status_code == 200 and "INC-000001" in done.text
            assert int(done.headers["Content-Length"]) == len(done.content)
            xlsx = await api.get(AUDIT.replace("audit.md", "audit.xlsx"))  # the slot is free again
            assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
            assert 'filename="audit-20261101-20261102.xlsx"' in xlsx.headers["Content-Disposition"]


# --- least privilege --------------------------------------------------------------------------------

# What vigil_web may do with each table (migrations grant it explicitly, table by table). Everything else is denied.
WEB_GRANTS = {
    "incidents": {"SELECT"},
    "alerts": {"SELECT"},
    "incident_timeline": {"SELECT"},
    "enrichments": {"SELECT"},
    "reports": {"SELECT"},
    "schema_migrations": {"SELECT"},
    "web_sessions": {"SELECT", "INSERT", "DELETE"},
    "web_login_attempts": {"SELECT", "INSERT", "DELETE"},
    "retention_horizon": {"SELECT"},
    "silences": {"SELECT"},
    "alertmanager_poll": {"SELECT"},
    # Configuration the API creates and deletes (migration 0064); never updated.
    "maintenance_windows": {"SELECT", "INSERT", "DELETE"},
    # Similar past incidents (migration 0065), for the page, the API and the reports the web renders.
    "incident_signature_tokens": {"SELECT"},
}
# Tables vigil_readonly may not read: every other one it may.
READONLY_EXCLUDED = {"web_sessions"}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
HELD_PRIVILEGES = "SELECT array(SELECT p FROM unnest(%s::text[]) AS p WHERE has_table_privilege(%s, %s, p)) AS ps"
OTHER_SESSIONS = (
    "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


async def test_every_table_has_its_grants_decided(db_url: str) -> None:
    """Migration 0060's rule: a migration that adds a table grants on it what each role needs. A table nobody
    decided about shows here."""
    async with await connect(db_url) as conn:
        listed = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        tables = [r["tablename"] for r in await listed.fetchall()]
        granted: dict[str, dict[str, set[str]]] = {"vigil_web": {}, "vigil_readonly": {}}
        for role, by_table in granted.items():
            for table in tables:
                held = await conn.execute(HELD_PRIVILEGES, (list(PRIVILEGES), role, f"public.{table}"))
                row = await held.fetchone()
                assert row is not None
                if row["ps"]:
                    by_table[table] = set(row["ps"])
    assert granted["vigil_web"] == WEB_GRANTS
    assert granted["vigil_readonly"] == {t: {"SELECT"} for t in tables if t not in READONLY_EXCLUDED}


async def test_the_web_role_reads_incidents_and_writes_only_its_own_tables(db_url: str, role_url: str) -> None:
    await seed(db_url)
    async with await connect(db_url) as owner:
        await owner.execute(
            "INSERT INTO reports (incident_id, version, format, content, sha256) "
            "SELECT id, 1, 'md', '\\x00'::bytea, 'x' FROM incidents"
        )
    async with await connect(role_url) as web_conn:
        row = await (await web_conn.execute("SELECT key FROM incidents")).fetchone()
        assert row == {"key": "INC-000001"}
        await web_conn.execute(
            "INSERT INTO web_sessions (token_hash, username, method, csrf_token, expires_at) "
            "VALUES ('h', 'alice', 'password', 'c', now() + interval '1 hour')"
        )
        await web_conn.execute("DELETE FROM web_sessions WHERE token_hash = 'h'")
        await web_conn.execute("INSERT INTO web_login_attempts (username) VALUES ('alice')")
        await web_conn.execute("DELETE FROM web_login_attempts")
        for statement in (
            "UPDATE incidents SET state = 'resolved'",
            "DELETE FROM incidents",
            "UPDATE alerts SET status = 'resolved'",
            "DELETE FROM alerts",
            "UPDATE reports SET content = ''",
            "DELETE FROM reports",
            "INSERT INTO incident_timeline (incident_id, at, kind) SELECT id, now(), 'x' FROM incidents",
            "UPDATE web_sessions SET username = 'mallory'",
            "SELECT * FROM outbox",
            "CREATE TABLE mine (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await web_conn.execute(statement)


async def test_the_web_never_needs_the_owners_url_when_it_has_its_own(
    settings: Settings, tmp_path: Path, db_url: str, role_url: str
) -> None:
    await seed(db_url)
    # Nothing listens there: a web that used VIGIL_DATABASE_URL (to migrate, say) would not start.
    nowhere = f"postgresql://vigil:{secrets.token_hex(12)}@127.0.0.1:{free_port()}/vigil"
    async with serve_web(limited(settings.model_copy(update={"database_url": nowhere}), tmp_path, role_url)) as web:
        async with web.client() as browser:
            await login(browser, "alice")  # writes a session and clears login attempts, as the role
            page = await browser.get("/incidents/INC-000001")
            assert page.status_code == 200 and "HostDown on web-1" in page.text
        async with await connect(db_url) as owner:
            users = await (await owner.execute(OTHER_SESSIONS)).fetchall()
    assert users == [{"usename": WEB_LOGIN}]


async def test_the_web_with_its_own_role_waits_for_the_schema_the_owner_migrates(
    settings: Settings, tmp_path: Path, postgres: Postgres, web_login: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name = f"t_empty_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    empty = postgres.admin_url(name)
    started: asyncio.Future[Web] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        changed = settings.model_copy(update={"database_url": empty})
        async with serve_web(limited(changed, tmp_path, login_url(empty, *web_login))) as running_web:
            started.set_result(running_web)
            await stop.wait()

    serving = asyncio.create_task(serve())
    try:
        await asyncio.sleep(1.5)
        assert not serving.done() and not started.done(), "the web started on a database without its schema"
        assert "waiting for the schema" in caplog.text
        await migrate(empty)  # as another service does at its start, with the owner's URL
        await asyncio.wait([started, serving], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        async with started.result().client(READONLY_TOKEN) as api:
            assert (await api.get("/api/v1/incidents")).json()["items"] == []
    finally:
        stop.set()
        await serving
        with psycopg.connect(postgres.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def own_cluster() -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own: one where the roles do not exist yet (roles belong to a whole cluster)."""
    root = temp_root("vigil-test-roles-")
    server = new_postgres(root)
    server.start(fsync=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_migrating_without_createrole_stops_at_the_roles_naming_what_is_needed(
    own_cluster: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    password = secrets.token_hex(12)
    with psycopg.connect(own_cluster.admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE owner LOGIN PASSWORD {}").format(sql.Literal(password)))
        admin.execute("CREATE DATABASE plain OWNER owner")
    owner = login_url(own_cluster.admin_url("plain"), "owner", password)
    with pytest.raises(MigrationError) as refused:
        await migrate(owner)
    message = str(refused.value)
    assert "0060_roles" in message and "owner" in message and "CREATEROLE" in message
    assert "CREATE ROLE vigil_web NOLOGIN" in message  # the hint: what an administrator can run instead
    with psycopg.connect(owner) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == [m.version for m in list_migrations() if m.version < "0060"]

    # An administrator makes the roles: the owner's migration uses them as found, saying so.
    with psycopg.connect(own_cluster.admin_url(), autocommit=True) as admin:
        admin.execute("CREATE ROLE vigil_web NOLOGIN")
        admin.execute("CREATE ROLE vigil_readonly NOLOGIN CREATEDB")
    with pytest.raises(MigrationError, match="vigil_readonly exists but has powers of its own"):
        await migrate(owner)
    with psycopg.connect(own_cluster.admin_url(), autocommit=True) as admin:
        admin.execute("ALTER ROLE vigil_readonly NOCREATEDB")
    with caplog.at_level(logging.WARNING, logger="shared.db"):
        assert "0060_roles" in await migrate(owner)
    assert "role vigil_web exists already" in caplog.text
    with psycopg.connect(owner) as conn:
        assert conn.execute("SELECT has_table_privilege('vigil_web', 'incidents', 'SELECT')").fetchone() == (True,)
