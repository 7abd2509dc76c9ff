"""The web (and ingest) against hostile and clumsy clients, over real sockets with the real PostgreSQL and RabbitMQ:
bounded password checks, failed logins counted per client address, the trusted proxy header and X-Forwarded-For
believed only from trusted proxies, credentials that are not text, and clients that send a request too slowly."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import services.web.access as access
from devstack.procs import free_port
from services.ingest.app import build_app as build_ingest
from services.web.app import build_app
from services.web.appkeys import LIVE
from shared.config import ConfigError, Settings
from tests.seed import insert_incident
from tests.web.webapp import PASSWORDS, RESPONDER_TOKEN, Web, connect, login, serve_web, try_login, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

READ_TIMEOUT_S = 1.0


@asynccontextmanager
async def serve_like_production(app: Any, port: int, read_timeout_s: float) -> AsyncIterator[str]:
    """Serve an app the way shared.service.run does: the runner with the read deadline and JSON 400s."""
    from aiohttp import web

    from shared.http_server import app_runner

    runner = app_runner(app, read_timeout_s)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def production_web(settings: Settings) -> AsyncIterator[Web]:
    app = build_app(settings)
    async with serve_like_production(app, settings.web_port, settings.web_read_timeout_s) as url:
        await asyncio.wait_for(app[LIVE].ready.wait(), 30)
        yield Web(url, settings)


async def exchange(port: int, request: bytes, *, timeout: float = 10) -> bytes:
    """Send raw bytes (nothing normalised, as aiohttp's and httpx's clients would) and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def body_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


def logins_counted(metrics: str, outcome: str) -> float:
    found = re.search(rf'^vigil_web_logins_total{{outcome="{outcome}"}} (\S+)$', metrics, re.M)
    assert found, outcome
    return float(found.group(1))


# --- 1. password checks: bounded, off the event loop ---------------------------------------------


async def test_logins_beyond_the_password_check_slots_wait_then_get_503(
    settings: Settings, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_check = access.check_password

    def slow_check(users: dict[str, access.User], name: str, password: str) -> access.User | None:
        time.sleep(1.5)  # as argon2 takes under load, in the check's thread
        return real_check(users, name, password)

    monkeypatch.setattr(access, "check_password", slow_check)
    one_at_a_time = web_settings(settings, tmp_path, web_login_concurrency=1, web_login_wait_s=0.3)
    async with serve_web(one_at_a_time) as web:
        clients = [web.client() for _ in range(3)]
        try:
            logins = [asyncio.create_task(try_login(c, "alice", "guess")) for c in clients]
            await asyncio.sleep(0.5)
            # The event loop is free while argon2 runs: probes and pages are answered at once.
            async with web.client() as probe:
                started = time.perf_counter()
                assert (await probe.get("/healthz")).status_code == 200
                assert time.perf_counter() - started < 0.3
            answers = await asyncio.gather(*logins)
        finally:
            for c in clients:
                await c.aclose()
        assert sorted(a.status_code for a in answers) == [401, 503, 503]
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.headers["Retry-After"] == "1"
        assert "Too many logins are being checked right now" in busy.text and 'name="password"' in busy.text
        async with web.client() as client:
            metrics = (await client.get("/metrics")).text
    assert logins_counted(metrics, "busy") >= 2
    async with await connect(db_url) as conn:
        # Only the login that was checked counts as a failure: a busy server is not the person's mistake.
        rows = await (await conn.execute("SELECT count(*) AS n FROM web_login_attempts")).fetchone()
    assert rows == {"n": 1}


# --- 2. failed logins per client address ---------------------------------------------------------


async def test_an_address_with_too_many_failures_is_refused_whatever_name_it_tries(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    limited = web_settings(
        settings,
        tmp_path,
        web_login_max_failures=100,
        web_login_max_failures_per_address=3,
        web_login_lockout_s=600,
    )
    async with serve_web(limited) as web, web.client() as client:
        for name in ("root", "admin", "alice"):
            assert (await try_login(client, name, "guess")).status_code == 401
        locked = await try_login(client, "victor", PASSWORDS["victor"])
        assert locked.status_code == 429, locked.text
        assert "Too many failed logins from your network address" in locked.text and "10 minutes" in locked.text
        assert 590 <= int(locked.headers["Retry-After"]) <= 600
        # X-Forwarded-For from a peer that is no trusted proxy is nobody's word: still the same address.
        async with web.client(**{"X-Forwarded-For": "198.51.100.9"}) as spoofing:
            assert (await try_login(spoofing, "victor", PASSWORDS["victor"])).status_code == 429
        async with await connect(db_url) as conn:
            rows = await (await conn.execute("SELECT username, address FROM web_login_attempts ORDER BY id")).fetchall()
            assert rows == [{"username": n, "address": "127.0.0.1"} for n in ("root", "admin", "alice")]
            await conn.execute("UPDATE web_login_attempts SET at = at - interval '601 seconds'")
        assert (await try_login(client, "victor", PASSWORDS["victor"])).status_code == 303
        metrics = (await client.get("/metrics")).text
    assert logins_counted(metrics, "locked_address") >= 2


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_on_its_own(
    settings: Settings, tmp_path: Path, db_url: str
) -> None:
    proxied = web_settings(
        settings,
        tmp_path,
        web_login_max_failures=100,
        web_login_max_failures_per_address=2,
        web_trusted_proxies=("127.0.0.1/32",),
    )
    async with serve_web(proxied) as web:

        async def attempt(forwarded_for: str, password: str = "guess") -> int:
            async with web.client(**{"X-Forwarded-For": forwarded_for}) as client:
                return (await try_login(client, "alice", password)).status_code

        assert [await attempt("198.51.100.7") for _ in range(3)] == [401, 401, 429]
        # What the client wrote before the proxy's own entry changes nothing.
        assert await attempt("203.0.113.1, 198.51.100.7", PASSWORDS["alice"]) == 429
        assert await attempt("198.51.100.8", PASSWORDS["alice"]) == 303
        # An IPv6 client counts per /64: another address in it is the same client.
        assert [await attempt("2001:db8:1:2::1") for _ in range(2)] == [401, 401]
        assert await attempt("2001:db8:1:2::ffff", PASSWORDS["alice"]) == 429
        assert await attempt("2001:db8:1:3::1", PASSWORDS["alice"]) == 303
        # A garbage entry stops the walk at the proxy: its address is counted, not one the client picked.
        assert await attempt("not-an-address") == 401
    async with await connect(db_url) as conn:
        rows = await (await conn.execute("SELECT DISTINCT address FROM web_login_attempts ORDER BY 1")).fetchall()
    # alice's right passwords cleared her failures; the last failure (through the garbage) is the proxy's.
    assert rows == [{"address": "127.0.0.1"}]


# --- 4. the trusted proxy --------------------------------------------------------------------------


async def test_the_trusted_user_header_counts_only_from_a_trusted_proxy(
    settings: Settings, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await insert_incident_one(db_url)
    elsewhere = web_settings(
        settings, tmp_path, web_trusted_header="X-Forwarded-User", web_trusted_proxies=("10.9.9.9/32",)
    )
    caplog.set_level(logging.WARNING, logger="services.web.gate")
    async with serve_web(elsewhere) as web, web.client(**{"X-Forwarded-User": "alice"}) as client:
        for _ in range(3):
            assert (await client.get("/incidents/INC-000001")).status_code == 302
            assert (await client.get("/api/v1/incidents")).status_code == 401
    ignored = [r for r in caplog.records if "trusted user header" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].peer == "127.0.0.1"  # type: ignore[attr-defined]

    here = web_settings(
        settings, tmp_path, web_trusted_header="X-Forwarded-User", web_trusted_proxies=("10.9.9.9/32", "127.0.0.0/8")
    )
    async with serve_web(here) as web, web.client(**{"X-Forwarded-User": "alice"}) as client:
        page = await client.get("/incidents/INC-000001")
        assert page.status_code == 200 and 'id="ack"' in page.text


async def insert_incident_one(db_url: str) -> None:
    async with await connect(db_url) as conn:
        await insert_incident(conn, number=1, title="HostDown on web-1")


async def test_a_trusted_header_without_trusted_proxies_stops_the_web_at_start(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="VIGIL_WEB_TRUSTED_PROXIES"):
        build_app(web_settings(settings, tmp_path, web_trusted_header="X-Forwarded-User"))
    env = {
        "PATH": os.environ["PATH"],
        "VIGIL_WEB_TRUSTED_HEADER": "X-Forwarded-User",
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_AMQP_URL": settings.amqp_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.web", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert "VIGIL_WEB_TRUSTED_PROXIES" in stderr.decode() and "Traceback" not in stderr.decode()


# --- 5. credentials that are not text ----------------------------------------------------------------

BAD_VALUES = [b"\xff\xfe", b"\x00", b"\x1b[31m", b"\x85", b"ok\xc3"]


@dataclass
class LoggedIn:
    web: Web
    cookie: str  # the session's Cookie header value
    csrf: str

    @property
    def port(self) -> int:
        return self.web.settings.web_port


@pytest.fixture
async def hardened(settings: Settings, tmp_path: Path, db_url: str) -> AsyncIterator[LoggedIn]:
    """The web served as in production, one incident, and a logged-in session."""
    await insert_incident_one(db_url)
    async with production_web(web_settings(settings, tmp_path)) as web, web.client() as client:
        csrf = await login(client, "alice")
        yield LoggedIn(web, f"vigil_session={client.cookies['vigil_session']}", csrf)


def raw(method: str, path: str, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        lines += [b"Content-Type: application/x-www-form-urlencoded", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_refused(answer: bytes, *, api: bool) -> None:
    status = status_of(answer)
    assert 400 <= status < 500, answer[:300]
    if api or b"application/json" in answer.split(b"\r\n\r\n", 1)[0]:
        problem = json.loads(body_of(answer))
        assert problem["status"] == status and problem["error"] in ("bad_request", "unauthorized")


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
async def test_credentials_that_are_not_text_get_a_4xx_never_a_500(hardened: LoggedIn, bad: bytes) -> None:
    port, cookie = hardened.port, hardened.cookie.encode()
    api_answers = [
        await exchange(port, raw("GET", "/api/v1/incidents", b"Authorization: " + bad)),
        await exchange(port, raw("GET", "/api/v1/incidents", b"Authorization: Bearer " + bad)),
        await exchange(port, raw("GET", "/api/v1/incidents", b"Cookie: vigil_session=" + bad)),
        await exchange(port, raw("GET", "/api/v1/incidents", b"Cookie: " + bad)),
        # A real session acting with a CSRF header that is not text.
        await exchange(
            port,
            raw(
                "POST",
                "/api/v1/incidents/INC-000001/ack",
                b"Cookie: " + cookie,
                b"X-CSRF-Token: " + bad,
                b"Content-Length: 0",
            ),
        ),
    ]
    for answer in api_answers:
        assert_refused(answer, api=True)
    page_answers = [
        await exchange(port, raw("GET", "/incidents/INC-000001", b"Cookie: vigil_session=" + bad)),
        await exchange(port, raw("GET", "/", b"Authorization: " + bad)),
        await exchange(
            port,
            raw("POST", "/incidents/INC-000001/ack", b"Cookie: " + cookie, b"X-CSRF-Token: " + bad),
        ),
        # The login form's own CSRF cookie.
        await exchange(
            port,
            raw("POST", "/login", b"Cookie: vigil_login_csrf=" + bad, body=b"username=alice&password=x&csrf=abc"),
        ),
    ]
    for answer in page_answers:
        assert_refused(answer, api=False)
    # The session still works: nothing was half-done.
    async with hardened.web.client(Cookie=hardened.cookie) as client:
        assert (await client.get("/api/v1/incidents")).status_code == 200


async def test_forms_that_are_not_text_get_a_400_and_names_with_control_characters_a_401(
    hardened: LoggedIn, db_url: str
) -> None:
    port, cookie, csrf = hardened.port, hardened.cookie.encode(), hardened.csrf.encode()
    async with hardened.web.client() as client:
        form = await client.get("/login")
        login_csrf = client.cookies["vigil_login_csrf"]
        assert form.status_code == 200
    login_cookie = b"Cookie: vigil_login_csrf=" + login_csrf.encode()
    not_utf8 = await exchange(port, raw("POST", "/login", login_cookie, body=b"username=\xff&password=x&csrf=a"))
    assert status_of(not_utf8) == 400 and b"not text" in body_of(not_utf8)
    nul = b"username=al%00ice&password=x&csrf=" + login_csrf.encode()
    assert status_of(await exchange(port, raw("POST", "/login", login_cookie, body=nul))) == 401
    acting = await exchange(
        port,
        raw("POST", "/incidents/INC-000001/comment", b"Cookie: " + cookie, body=b"csrf=" + csrf + b"&comment=\xff"),
    )
    assert status_of(acting) == 400
    async with await connect(db_url) as conn:
        rows = await (await conn.execute("SELECT count(*) AS n FROM web_login_attempts")).fetchone()
    assert rows == {"n": 0}  # neither was counted or stored


async def test_a_request_too_malformed_to_parse_gets_a_json_problem(hardened: LoggedIn) -> None:
    answer = await exchange(hardened.port, raw("GET", "/api/v1/incidents", b"X-Anything: \x00"))
    assert status_of(answer) == 400
    assert json.loads(body_of(answer))["message"] == "malformed request: Invalid header value char"
    answer = await exchange(hardened.port, b"GET /\x01 HTTP/1.1\r\n\r\n")
    assert status_of(answer) == 400 and json.loads(body_of(answer))["error"] == "bad_request"


# --- 6. slow clients -------------------------------------------------------------------------------------


async def trickle(port: int, request: bytes, *, every_s: float, head: int = 0) -> tuple[float, bytes]:
    """Send `request[:head]` at once, then the rest a byte every `every_s`; the seconds until the server closed the
    connection (inf: it never did while there was something to send) and what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()
    try:
        writer.write(request[:head])
        for n in range(head, len(request)):
            try:
                answer = await asyncio.wait_for(reader.read(), every_s)
            except TimeoutError:
                writer.write(request[n : n + 1])
                await writer.drain()
                continue
            return asyncio.get_running_loop().time() - started, answer
        return float("inf"), b""
    except ConnectionError:
        return asyncio.get_running_loop().time() - started, b""
    finally:
        writer.close()


@pytest.fixture
async def slow_web(settings: Settings, tmp_path: Path) -> AsyncIterator[Web]:
    async with production_web(web_settings(settings, tmp_path, web_read_timeout_s=READ_TIMEOUT_S)) as web:
        yield web


async def test_headers_sent_a_byte_at_a_time_lose_the_connection(slow_web: Web) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + b"s" * 60 + b"\r\n\r\n"
    closed_after, answer = await trickle(slow_web.settings.web_port, request, every_s=0.1)
    assert READ_TIMEOUT_S - 0.1 <= closed_after <= READ_TIMEOUT_S + 1.5 and answer == b""


async def test_a_connection_that_sends_nothing_is_closed(slow_web: Web) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", slow_web.settings.web_port)
    started = time.perf_counter()
    try:
        assert await asyncio.wait_for(reader.read(), READ_TIMEOUT_S + 2) == b""
    finally:
        writer.close()
    assert time.perf_counter() - started >= READ_TIMEOUT_S - 0.1


async def test_a_body_sent_a_byte_at_a_time_loses_the_connection(slow_web: Web) -> None:
    body = b"username=alice&password=" + b"p" * 60
    request = raw("POST", "/login", body=body)
    closed_after, answer = await trickle(
        slow_web.settings.web_port, request, every_s=0.1, head=len(request) - len(body)
    )
    assert closed_after <= READ_TIMEOUT_S + 1.5 and answer == b""


async def test_keep_alive_waits_and_slow_handlers_and_long_streams_are_not_cut(slow_web: Web) -> None:
    port = slow_web.settings.web_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            await asyncio.sleep(
                READ_TIMEOUT_S * 1.5
            )  # idle between requests: keep-alive's business, not the deadline's
    finally:
        writer.close()
    async with slow_web.client(RESPONDER_TOKEN) as client:
        async with client.stream("GET", "/api/v1/stream") as stream:
            assert stream.status_code == 200
            chunks = stream.aiter_bytes()
            assert b": connected" in await asyncio.wait_for(anext(chunks), 5)
            # Nothing to send for longer than the read timeout: the stream stays open (a closed one ends the iteration).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(chunks), READ_TIMEOUT_S * 2.5)


def big_webhook(size: int) -> bytes:
    """An Alertmanager notification of about `size` bytes, within ingest's 1,000 alerts."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "Big", "severity": "warning", "instance": "web-1:9100"},
        "annotations": {"description": "x" * 4000},
        "startsAt": "2026-11-25T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
    }
    each = len(json.dumps(alert)) + 20  # with its "n" label and a comma
    alerts = [{**alert, "labels": {**alert["labels"], "n": str(n)}} for n in range(size // each)]
    notification = {
        "receiver": "vigil",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "Big"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="Big"}',
        "truncatedAlerts": 0,
    }
    return json.dumps(notification).encode()


async def test_ingest_takes_a_large_webhook_at_full_speed_and_drops_a_trickled_one(settings: Settings) -> None:
    fast = settings.model_copy(update={"web_read_timeout_s": READ_TIMEOUT_S})
    app = build_ingest(fast)
    async with serve_like_production(app, fast.ingest_port, READ_TIMEOUT_S) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(200):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            body = big_webhook(fast.ingest_max_body_bytes - 200_000)
            assert len(body) <= fast.ingest_max_body_bytes
            answer = await client.post(
                "/api/v1/webhooks/alertmanager",
                content=body,
                headers={"Authorization": "Bearer test-sender-token-0001", "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(json.loads(body)["alerts"]) > 900
        head = (
            b"POST /api/v1/webhooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer test-sender-token-0001\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        closed_after, _ = await trickle(fast.ingest_port, head + b"{" * 100, every_s=0.1, head=len(head))
        assert closed_after <= READ_TIMEOUT_S + 1.5


async def test_every_service_process_serves_with_the_read_deadline(settings: Settings, tmp_path: Path) -> None:
    """`python -m services.ingest` as deployed: slow clients dropped, malformed requests get JSON, SIGTERM stops it."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "VIGIL_INGEST_PORT": str(port),
        "VIGIL_AMQP_URL": settings.amqp_url,
        "VIGIL_INGEST_TOKEN": "test-sender-token-0001",
        "VIGIL_WEB_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "VIGIL_STATE_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ingest", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("ingest did not start")
        closed_after, answer = await trickle(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 20, every_s=0.1
        )
        assert closed_after <= READ_TIMEOUT_S + 1.5 and answer == b""
        malformed = await exchange(port, raw("POST", "/api/v1/events", b"Authorization: \x1b[31m"))
        assert status_of(malformed) == 400 and json.loads(body_of(malformed))["status"] == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()[-2000:]
