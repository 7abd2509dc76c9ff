"""The alert path against the real PostgreSQL and RabbitMQ: no alert, however odd or hostile, stalls or falsifies it.

Webhooks go through ingest and the correlator running in this process, as Alertmanager would send them; what counts
is what lands in PostgreSQL, what `/readyz` says, and where a message that cannot be handled ends up."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from pydantic import SecretStr

from devstack.rabbitmq import RabbitMQ
from devstack.throwaway import new_rabbitmq, temp_root
from services.correlator.app import build_app as build_correlator
from services.correlator.store import group_lock_id
from services.ingest.app import build_app as build_ingest
from services.web.presentation import alert_json, alert_row
from shared.alert_limits import ALERTMANAGER_FINGERPRINT, stable_fingerprint
from shared.config import Settings
from shared.contracts import CommandAction, Envelope, IncidentCommand
from shared.db import is_database_outage
from shared.fingerprint import label_fingerprint
from shared.messaging import CORRELATOR_QUEUE, Broker, Delivery
from shared.messaging.topology import retry_queue_arguments, retry_queue_name
from shared.readmodel.models import Alert
from shared.reports import incident_report
from shared.reports.rendering import render_all
from tests.broker import drain, new_broker
from tests.conftest import running

WEBHOOK = "/api/v1/webhooks/alertmanager"


def am_alert(
    name: str = "HostDown",
    host: str = "db1",
    *,
    status: str = "firing",
    starts_at: str | None = None,
    fingerprint: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": "critical", "instance": f"{host}:9100", **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} on {host}"},
        "startsAt": starts_at or (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "endsAt": datetime.now(UTC).isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": label_fingerprint(all_labels) if fingerprint is None else fingerprint,
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "receiver": "vigil",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")} if alerts else {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


@dataclass
class Pipeline:
    settings: Settings
    ingest: str
    correlator: str
    client: httpx.AsyncClient

    async def post(self, body: Any, token: str = "test-sender-token-0001") -> httpx.Response:
        return await self.client.post(
            self.ingest + WEBHOOK,
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    async def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.settings.database_url, row_factory=dict_row) as conn:
            return await (await conn.execute(sql, args)).fetchall()  # type: ignore[arg-type]

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError("the pipeline did not get there in time")
            await asyncio.sleep(0.1)

    async def stored(self, alertname: str) -> list[dict[str, Any]]:
        return await self.query(
            "SELECT a.*, i.key, i.group_key, i.hosts FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE a.alertname = %s ORDER BY a.id",
            alertname,
        )

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(self.correlator + "/readyz")
        return response.status_code, response.json()


@asynccontextmanager
async def pipeline(settings: Settings, *, frames: bool = True, **overrides: Any) -> AsyncIterator[Pipeline]:
    settings = settings.model_copy(update=overrides)
    async with (
        running(build_ingest(settings, frames=frames), settings.ingest_port) as ingest,
        running(build_correlator(settings, sweep_interval_s=3600), settings.correlator_port) as correlator,
        httpx.AsyncClient(timeout=10) as client,
    ):
        p = Pipeline(settings, ingest, correlator, client)
        for url in (ingest, correlator):
            await p.until(lambda url=url: _ready(client, url))  # type: ignore[misc]
        yield p


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    return (await client.get(url + "/readyz")).status_code == 200


# --- 1. nothing an otherwise valid alert carries makes it unstorable ---------------------------------------------


async def test_a_3kb_label_is_stored_cut_and_the_alerts_behind_it_become_incidents(settings: Settings) -> None:
    hostile = secrets.token_urlsafe(2400)  # 3.2 kB of random text: past PostgreSQL's index row limit as a group key
    async with pipeline(settings) as p:
        assert (await p.post(notification(am_alert("Odd", hostile)))).status_code == 200
        for n in range(10):
            assert (await p.post(notification(am_alert("Ordinary", f"web-{n}")))).status_code == 200

        async def all_in() -> bool:
            return len(await p.stored("Ordinary")) == 10 and len(await p.stored("Odd")) == 1

        await p.until(all_in)
        [odd] = await p.stored("Odd")
        ordinary = await p.stored("Ordinary")
        ready = await p.readyz()
    instance = odd["labels"]["instance"]
    assert len(instance.encode()) <= settings.ingest_max_label_value_bytes
    assert instance.startswith(hostile[:1000]) and "…[cut " in instance
    assert odd["adjustments"]["cut"]["labels.instance"] == len(f"{hostile}:9100") - len(instance.split("…[cut")[0])
    assert odd["group_key"].startswith("default:sha256:")
    assert len({r["key"] for r in ordinary}) == 10
    assert ready[0] == 200


async def test_an_alert_published_by_aio_pika_is_stored_as_one_published_by_the_fast_path(settings: Settings) -> None:
    """Ingest's fallback publisher (aio-pika's publish, with confirms) takes an alert all the way to its incident, and
    what is stored is what the fast path's frames lead to."""
    stored: dict[str, dict[str, Any]] = {}
    started = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for frames in (True, False):
        name = "ByFrames" if frames else "ByAioPika"
        async with pipeline(settings, frames=frames) as p:
            sent = notification(am_alert(name, "db7", starts_at=started, service="api"))
            assert (await p.post(sent)).status_code == 200

            async def arrived(name: str = name, p: Pipeline = p) -> bool:
                return len(await p.stored(name)) == 1

            await p.until(arrived)
            [row] = await p.stored(name)
        stored[name] = row
    varying = {"id", "incident_id", "key", "fingerprint", "first_seen_at", "last_seen_at"}
    by_frames, by_aio_pika = (
        json.dumps({k: v for k, v in row.items() if k not in varying}, default=str, sort_keys=True).replace(name, "X")
        for name, row in stored.items()
    )
    assert by_frames == by_aio_pika
    assert stored["ByAioPika"]["labels"]["service"] == "api" and stored["ByAioPika"]["key"].startswith("INC-")


async def test_more_alerts_than_the_limit_get_413_naming_alertmanagers_max_alerts(settings: Settings) -> None:
    async with pipeline(settings, ingest_max_alerts=3) as p:
        answer = await p.post(notification(*(am_alert("Many", f"h{n}") for n in range(4))))
        fine = await p.post(notification(*(am_alert("Many", f"h{n}") for n in range(3))))
    assert answer.status_code == 413
    body = answer.json()
    assert body["error"] == "too_many_alerts" and body["field"] == "alerts"
    assert "max_alerts" in body["message"] and "VIGIL_INGEST_MAX_ALERTS" in body["message"]
    assert fine.status_code == 200


async def test_an_impossible_start_is_stored_as_received_and_its_repeats_are_one_occurrence(
    settings: Settings,
) -> None:
    async with pipeline(settings) as p:
        before = datetime.now(UTC)
        for _ in range(3):  # Alertmanager repeats a firing alert
            assert (await p.post(notification(am_alert("Ancient", starts_at="0001-01-01T00:00:00Z")))).is_success
            await asyncio.sleep(0.3)

        async def stored() -> bool:
            rows = await p.query("SELECT last_seen_at, first_seen_at FROM alerts WHERE alertname = 'Ancient'")
            return len(rows) == 1 and rows[0]["last_seen_at"] > rows[0]["first_seen_at"] + timedelta(seconds=0.5)

        await p.until(stored)
        [alert] = await p.stored("Ancient")
        [incident] = await p.query("SELECT * FROM incidents")
        async with await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row) as conn:
            report = await incident_report.load(conn, incident["key"])
    assert before <= alert["starts_at"] <= before + timedelta(seconds=10)
    assert alert["adjustments"]["starts_at"] == "0001-01-01T00:00:00+00:00"
    assert incident["alert_count"] == 1 and not incident["flapping"]
    assert incident["first_alert_at"] == alert["starts_at"]
    # The original is shown where the alert is: its row on the incident page, the API, and every report format.
    said = "startsAt sent as 0001-01-01T00:00:00+00:00: the time it was received stands in"
    shown = Alert.from_row({f.name: alert[f.name] for f in fields(Alert) if f.name in alert})
    assert said in alert_row(shown) and alert_json(shown)["adjustments"]["starts_at"] == "0001-01-01T00:00:00+00:00"
    assert report is not None
    rendered = render_all(report)
    assert said in rendered["md"].content.decode()
    assert json.loads(rendered["json"].content)["alerts"][0]["adjusted"] == [said]


async def test_an_odd_fingerprint_is_replaced_by_a_stable_hash_and_the_original_kept(settings: Settings) -> None:
    weird = "fingerprint/../" + "x" * 300
    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    async with pipeline(settings) as p:
        await p.post(notification(am_alert("OddPrint", fingerprint=weird, starts_at=start)))
        await p.post(notification(am_alert("OddPrint", fingerprint=weird, starts_at=start, status="resolved")))

        async def resolved() -> bool:
            rows = await p.stored("OddPrint")
            return len(rows) == 1 and rows[0]["status"] == "resolved"

        await p.until(resolved)
        [alert] = await p.stored("OddPrint")
    assert len(alert["fingerprint"]) == 16 and alert["fingerprint"] != weird
    assert alert["adjustments"]["fingerprint"].startswith("fingerprint/../xxx")
    assert len(alert["adjustments"]["fingerprint"].encode()) <= settings.ingest_max_fingerprint_bytes


# --- 2. an outage holds; a bad message fails alone ----------------------------------------------------------------


async def _error_of(db_url: str, sql: str) -> psycopg.Error:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        try:
            await conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            return exc
    raise AssertionError(f"{sql} did not fail")


async def test_postgres_errors_are_told_apart_by_sqlstate(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE narrow (v text PRIMARY KEY)")
    too_big = await _error_of(db_url, f"INSERT INTO narrow VALUES ('{secrets.token_hex(4000)}')")
    assert too_big.sqlstate == "54000" and isinstance(too_big, psycopg.OperationalError)
    assert not is_database_outage(too_big)  # psycopg calls it operational; it is about the row, not the server
    assert not is_database_outage(await _error_of(db_url, "SELECT 1/0"))
    assert not is_database_outage(await _error_of(db_url, "SET statement_timeout = 10; SELECT pg_sleep(1)"))
    terminated = await _error_of(db_url, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert terminated.sqlstate == "57P01" and is_database_outage(terminated)
    try:
        await psycopg.AsyncConnection.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    except psycopg.OperationalError as refused:
        assert refused.sqlstate is None and is_database_outage(refused)


async def test_a_message_the_database_refuses_fails_alone_and_is_parked(db_url: str, amqp_url: str) -> None:
    """The original stall: an index row too large was taken for an outage and the batch held forever."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE handled (comment text PRIMARY KEY)")
    broker = await new_broker(amqp_url, max_attempts=2)
    handlings = 0

    async def store(deliveries: list[Delivery]) -> None:
        nonlocal handlings
        handlings += 1
        async with await psycopg.AsyncConnection.connect(db_url) as conn, conn.transaction():
            for d in deliveries:
                await conn.execute("INSERT INTO handled VALUES (%s)", (d.envelope.data["comment"],))

    poison = secrets.token_hex(4000)
    comments = [f"ok-{n}" for n in range(20)]
    comments.insert(7, poison)
    try:
        for text in comments:
            await broker.publish("vigil.commands", "command.comment", _comment(text))
        await broker.consume(CORRELATOR_QUEUE, store, is_outage=is_database_outage, batch_size=50, batch_wait_s=0.5)
        parked = await drain(amqp_url, f"{CORRELATOR_QUEUE.name}.parking", wait=2.0)
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            rows = await (await conn.execute("SELECT comment FROM handled")).fetchall()
    finally:
        await broker.close()
    assert sorted(r[0] for r in rows) == sorted(c for c in comments if c != poison)
    assert [json.loads(m.body)["data"]["comment"] for m in parked] == [poison]
    assert "54000" in parked[0].headers["x-vigil-error"] or "index row" in parked[0].headers["x-vigil-error"]
    assert handlings < 2 * 21  # split in halves, not retried one by one forever


def _comment(text: str) -> Envelope[IncidentCommand]:
    return Envelope(
        type="command.comment",
        producer="test",
        data=IncidentCommand.model_construct(
            key="INC-000001", action=CommandAction.comment, actor="t", comment=text, requested_at=datetime.now(UTC)
        ),
    )


# --- 3. a stall is visible ----------------------------------------------------------------------------------------


async def test_a_lane_that_settles_nothing_fails_readyz_and_shows_its_oldest_wait(settings: Settings) -> None:
    async with pipeline(settings, stall_after_s=1.5) as p:
        assert (await p.readyz())[0] == 200
        group = 'default:{"host":"stuck"}'
        # Someone holds the group's lock (a hung transaction): the correlator's batch waits and settles nothing.
        async with await psycopg.AsyncConnection.connect(settings.database_url) as blocker:
            await blocker.execute("SELECT pg_advisory_lock(%s)", (group_lock_id(group),))
            await p.post(notification(am_alert("Stuck", "stuck")))

            async def stalled() -> bool:
                return (await p.readyz())[0] == 503

            await p.until(stalled, timeout=15)
            status, body = await p.readyz()
            metrics = (await p.client.get(p.correlator + "/metrics")).text
            await blocker.execute("SELECT pg_advisory_unlock_all()")
        await p.until(lambda: _ready(p.client, p.correlator), timeout=15)
        stored = await p.stored("Stuck")
    assert status == 503 and body["checks"]["consumers"] is False and body["checks"]["database"] is True
    waits = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('vigil_consumer_oldest_unacked_seconds{lane="0",queue="vigil.correlator"}')
        or line.startswith('vigil_consumer_oldest_unacked_seconds{lane="1",queue="vigil.correlator"}')
    ]
    assert max(waits) >= 1.5
    assert 'vigil_consumer_stalled{lane="0",queue="vigil.correlator"}' in metrics
    assert len(stored) == 1  # once the lock went, the alert went through


# --- 4. a sender owns its alerts ------------------------------------------------------------------------------------


async def test_another_sender_cannot_resolve_or_change_an_alert(settings: Settings) -> None:
    settings = settings.model_copy(update={"ingest_tokens": {"cron": SecretStr("cron-sender-token-01")}})
    async with pipeline(settings) as p:
        firing = am_alert("Owned", "db9")
        assert (await p.post(notification(firing))).status_code == 200
        await p.until(lambda: _status_is(p, "Owned", "firing"))
        resolved = {**firing, "status": "resolved", "endsAt": datetime.now(UTC).isoformat()}
        assert (await p.post(notification(resolved), token="cron-sender-token-01")).status_code == 200
        await asyncio.sleep(1.0)
        [still] = await p.stored("Owned")
        assert (await p.post(notification(resolved))).status_code == 200
        await p.until(lambda: _status_is(p, "Owned", "resolved"))
        timeline = await p.query("SELECT kind, detail FROM incident_timeline ORDER BY id")
    assert still["status"] == "firing" and still["sender"] == "alertmanager"
    alert_entries = [t for t in timeline if t["kind"].startswith("alert_")]
    assert [(t["kind"], t["detail"]["sender"]) for t in alert_entries] == [
        ("alert_added", "alertmanager"),
        ("alert_resolved", "alertmanager"),
    ]


async def _status_is(p: Pipeline, alertname: str, status: str) -> bool:
    rows = await p.stored(alertname)
    return len(rows) == 1 and rows[0]["status"] == status


# --- 6. no message lost between queues ------------------------------------------------------------------------------


async def test_retry_queues_dead_letter_at_least_once(amqp_url: str, rabbitmq: RabbitMQ) -> None:
    broker = await new_broker(amqp_url)
    await broker.close()
    vhost = amqp_url.rsplit("/", 1)[1]
    queues = {q["name"]: q["arguments"] for q in rabbitmq.api("GET", f"/api/queues/{vhost}")}  # type: ignore[union-attr]
    for name in (retry_queue_name("vigil.correlator", 50), retry_queue_name("vigil.enricher", 100)):
        assert queues[name]["x-dead-letter-strategy"] == "at-least-once", name
        assert queues[name]["x-overflow"] == "reject-publish", name
        assert queues[name]["x-dead-letter-routing-key"] == name.split(".retry.")[0]


async def test_a_retry_queue_declared_by_an_older_vigil_is_upgraded_once_empty(
    amqp_url: str, rabbitmq: RabbitMQ
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    delay = 60_000

    def old(queue: str) -> dict[str, Any]:
        args = retry_queue_arguments(queue, delay)
        return {k: v for k, v in args.items() if k not in ("x-overflow", "x-dead-letter-strategy")}

    idle, busy = retry_queue_name("vigil.enricher", delay), retry_queue_name("vigil.reporter", delay)
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        await channel.declare_queue(idle, durable=True, arguments=old("vigil.enricher"))
        await channel.declare_queue(busy, durable=True, arguments=old("vigil.reporter"))
        await channel.default_exchange.publish(aio_pika.Message(b"waiting"), routing_key=busy)
    broker = await new_broker(amqp_url, retry_delays_ms=(delay,))  # declares the topology
    await broker.close()
    queues = {q["name"]: q for q in rabbitmq.api("GET", f"/api/queues/{vhost}")}  # type: ignore[union-attr]
    assert queues[idle]["arguments"]["x-dead-letter-strategy"] == "at-least-once"
    # One holding a message is left as it was, message and all, until a later start finds it empty.
    assert "x-dead-letter-strategy" not in queues[busy]["arguments"]
    assert not any(name.endswith(".upgrading") for name in queues)
    assert [m.body for m in await drain(amqp_url, busy)] == [b"waiting"]
    broker = await new_broker(amqp_url, retry_delays_ms=(delay,))  # the next start finds it empty
    await broker.close()
    queues = {q["name"]: q for q in rabbitmq.api("GET", f"/api/queues/{vhost}")}  # type: ignore[union-attr]
    assert queues[busy]["arguments"]["x-dead-letter-strategy"] == "at-least-once"


@pytest.mark.slow
async def test_messages_waiting_in_a_retry_queue_survive_a_broker_restart() -> None:
    root = temp_root("vigil-retry-restart-")
    server = new_rabbitmq(root)
    await asyncio.to_thread(server.start)
    try:
        url = server.url()
        broker = Broker(url, producer="test", retry_delays_ms=(4000,), max_attempts=5)
        await broker.start()
        await asyncio.wait_for(broker.wait_connected(), 30)
        handled: list[tuple[str, int]] = []

        async def fails_first(deliveries: list[Delivery]) -> None:
            for d in deliveries:
                handled.append((d.envelope.data["comment"], d.attempts))
                if d.attempts == 0:
                    raise RuntimeError("not yet")

        await broker.consume(CORRELATOR_QUEUE, fails_first, is_outage=is_database_outage)
        for n in range(5):
            await broker.publish("vigil.commands", "command.comment", _comment(f"m{n}"))
        deadline = time.monotonic() + 10
        while len(handled) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(handled) == 5  # each failed once: five copies wait in the 4-second retry queue
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        deadline = time.monotonic() + 60
        while len(handled) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await broker.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)
    assert sorted(c for c, attempts in handled if attempts == 1) == [f"m{n}" for n in range(5)]


# --- hostile alerts, each followed by a sentinel that must get through ---------------------------------------------

SMALL_LIMITS = {
    "ingest_max_labels": 8,
    "ingest_max_label_name_bytes": 64,
    "ingest_max_label_value_bytes": 64,
    "ingest_max_annotation_bytes": 256,
    "ingest_max_generator_url_bytes": 256,
    "ingest_max_fingerprint_bytes": 16,
    "ingest_max_alerts": 5,
}

odd_text = st.text(
    # Any character JSON can carry, controls included, but NUL (PostgreSQL cannot store it: refused, see below).
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=300,
)
odd_times = st.one_of(
    st.datetimes(
        timezones=st.just(UTC) | st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999+00:00",
            "0001-01-01T00:00:00+14:00",
            "1969-12-31T23:59:59Z",
        ]
    ),
)
odd_fingerprints = st.one_of(
    st.just(""),
    st.text(max_size=2000).filter(lambda t: "\x00" not in t),
    st.text("0123456789ABCDEF", min_size=16, max_size=16),
    st.just("0" * 16),
)
# Valid JSON of the right shape with odd contents: stored, bounded.
odd_alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": st.dictionaries(odd_text, odd_text | st.text("xé🙂", max_size=3000), max_size=20),
        "annotations": st.dictionaries(odd_text, odd_text | st.text("ab\n", max_size=2000), max_size=12),
        "startsAt": odd_times,
        "endsAt": odd_times,
        "generatorURL": odd_text | st.text("http:/ab?=&%", max_size=600) | st.just("javascript:alert(1)"),
        "fingerprint": odd_fingerprints,
    }
)
# Wrong in shape or type: refused with a 4xx naming the field.
broken_alerts = st.one_of(
    odd_alerts.map(lambda a: {**a, "status": "pending"}),
    odd_alerts.map(lambda a: {**a, "labels": {"alertname": 42}}),  # a number where a string goes
    odd_alerts.map(lambda a: {**a, "startsAt": "yesterday"}),
    odd_alerts.map(lambda a: {**a, "startsAt": "2026-01-01T00:00:00"}),  # no offset
    odd_alerts.map(lambda a: {**a, "labels": {"alertname": "nul\x00"}}),
)
# Mostly requests of odd but valid alerts; now and then one with a broken alert among them.
hostile_requests = st.one_of(
    st.lists(odd_alerts, min_size=1, max_size=6),
    st.lists(odd_alerts, min_size=1, max_size=5),
    st.lists(odd_alerts, min_size=1, max_size=5),
    st.tuples(st.lists(odd_alerts, max_size=3), broken_alerts).map(lambda t: [*t[0], t[1]]),
)


@pytest.fixture(params=[True, False], ids=["fast-path", "aio-pika"])
async def hostile_pipeline(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Pipeline]:
    """Both of ingest's publishers: its own frames, and the aio-pika fallback it takes when a channel cannot."""
    async with pipeline(settings, frames=request.param, **SMALL_LIMITS) as p:
        yield p


SENTINELS = iter(range(10**9))


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(alerts=hostile_requests)
async def test_hostile_alerts_are_stored_bounded_or_refused_and_never_hold_up_the_next(
    hostile_pipeline: Pipeline, alerts: list[dict[str, Any]]
) -> None:
    p = hostile_pipeline
    hostile = await p.post({**notification(), "alerts": alerts})
    n = next(SENTINELS)
    sentinel = await p.post(notification(am_alert(f"Sentinel{n}", f"sentinel-{n}")))
    assert sentinel.status_code == 200
    event(f"hostile answered {hostile.status_code} {hostile.json().get('errors', [{}])[0].get('type', '')}")
    assert hostile.status_code == 200 or 400 <= hostile.status_code < 500, hostile.text
    if hostile.status_code != 200:
        assert hostile.json()["error"] in {"invalid_payload", "invalid_json", "too_many_alerts"}, hostile.text
        assert len(alerts) > 5 or hostile.json().get("field"), hostile.text  # the field at fault is named

    async def sentinel_is_an_incident() -> bool:
        rows = await p.query(
            "SELECT 1 FROM alerts a JOIN incidents i ON i.id = a.incident_id WHERE a.alertname = %s AND i.announced",
            f"Sentinel{n}",
        )
        return bool(rows)

    await p.until(sentinel_is_an_incident, timeout=10)
    if hostile.status_code == 200:
        # Every accepted alert is stored, under the fingerprint the limits give it.
        for alert in alerts:
            rows = await p.query("SELECT labels FROM alerts WHERE fingerprint = %s", _stored_fingerprint(alert))
            assert rows, alert
            assert all(len(k.encode()) <= 64 and len(v.encode()) <= 64 for k, v in rows[0]["labels"].items())
    ready = await p.readyz()
    assert ready[0] == 200, ready


def _stored_fingerprint(alert: dict[str, Any]) -> str:
    sent = alert["fingerprint"]
    if not sent:
        return label_fingerprint(alert["labels"])
    return sent if ALERTMANAGER_FINGERPRINT.fullmatch(sent) else stable_fingerprint(sent)
