"""The example subscriber (python -m examples.subscriber) and the committed AsyncAPI document."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from devstack.procs import free_port
from examples.subscriber import Seen
from shared.asyncapi import asyncapi_document, render
from shared.contracts import (
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentEventType,
    IncidentSnapshot,
    IncidentState,
    incident_routing_key,
)
from shared.messaging import Broker
from tests.conftest import running

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def event(event: IncidentEventType, key: str = "INC-000007", revision: int = 2, severity: str = "critical") -> Envelope:
    snapshot = IncidentSnapshot(
        key=key,
        title="HostDown on web-1",
        state=IncidentState.resolved if event == IncidentEventType.resolved else IncidentState.open,
        severity=severity,
        rule="default",
        group_labels={"host": "web-1"},
        hosts=["web-1"],
        alert_count=1,
        firing_count=1,
        revision=revision,
        opened_at=T0,
        first_alert_at=T0,
        last_alert_at=T0,
    )
    data = IncidentEvent(incident=snapshot, change=event.value.split(".")[1])
    return Envelope[IncidentEvent](type=event.value, producer="correlator", data=data)


@asynccontextmanager
async def subscriber(amqp_url: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.subscriber",
        "--amqp-url",
        amqp_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, "subscriber exited before subscribing"
            if json.loads(line).get("msg") == "subscribed":
                break
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


async def publish(amqp_url: str, *envelopes: Envelope) -> None:
    broker = Broker(amqp_url, producer="test")
    await broker.start()
    await asyncio.wait_for(broker.wait_connected(), 30)
    try:
        for env in envelopes:
            key = incident_routing_key(env.type, env.data.incident.severity)
            await broker.publish(INCIDENTS_EXCHANGE, key, env, mandatory=False)
    finally:
        await broker.close()


async def test_subscriber_prints_the_events_its_bindings_select(amqp_url: str) -> None:
    opened = event(IncidentEventType.opened)
    async with subscriber(amqp_url, "--bind", "incident.opened.#", "--bind", "incident.*.warning") as proc:
        await publish(
            amqp_url,
            opened,
            opened,  # delivered twice: printed once
            event(IncidentEventType.resolved, revision=3),  # not bound
            event(IncidentEventType.updated, key="INC-000008", severity="warning"),
        )
        assert proc.stdout is not None
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 15)) for _ in range(2)]
        proc.terminate()
        rest = await asyncio.wait_for(proc.stdout.read(), 15)
    assert [(line["type"], line["routing_key"], line["late"]) for line in lines] == [
        ("incident.opened", "incident.opened.critical", False),
        ("incident.updated", "incident.updated.warning", False),
    ]
    assert lines[0]["id"] == str(opened.id) and lines[0]["data"]["incident"]["key"] == "INC-000007"
    assert rest == b""


async def test_subscriber_forwards_to_a_url(amqp_url: str) -> None:
    received: list[dict] = []
    attempts = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return web.Response(status=503)  # a hiccup: the event is retried, not lost
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    port = free_port()
    async with running(app, port) as url:
        async with subscriber(amqp_url, "--bind", "#", "--forward-url", f"{url}/hook"):
            await publish(amqp_url, event(IncidentEventType.opened))
            for _ in range(200):
                if received:
                    break
                await asyncio.sleep(0.05)
    assert attempts == 2
    assert [r["type"] for r in received] == ["incident.opened"]


async def test_subscriber_passes_on_an_event_that_comes_after_a_newer_one_marked_late(amqp_url: str) -> None:
    opened = event(IncidentEventType.opened, revision=2)
    updated = event(IncidentEventType.updated, revision=3)
    enriched = event(IncidentEventType.enriched, revision=2)  # refers to revision 2: not late
    async with subscriber(amqp_url, "--bind", "#") as proc:
        await publish(amqp_url, updated, opened, updated, opened, enriched)  # the second copies are redeliveries
        assert proc.stdout is not None
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 15)) for _ in range(3)]
        proc.terminate()
        rest = await asyncio.wait_for(proc.stdout.read(), 15)
    assert [(line["type"], line["data"]["incident"]["revision"], line["late"]) for line in lines] == [
        ("incident.updated", 3, False),
        ("incident.opened", 2, True),
        ("incident.enriched", 2, False),
    ]
    assert [line["id"] for line in lines] == [str(updated.id), str(opened.id), str(enriched.id)]
    assert lines[1]["routing_key"] == "incident.opened.critical"
    assert rest == b""


def test_seen_skips_duplicates_and_tells_late_snapshots_within_its_memory() -> None:
    seen = Seen(size=3)

    def env(ev: IncidentEventType, revision: int, key: str = "INC-000007") -> dict:
        return json.loads(event(ev, key=key, revision=revision).model_dump_json())

    newer, older = env(IncidentEventType.updated, 5), env(IncidentEventType.opened, 4)
    assert seen.is_new(newer) and not seen.is_late(newer)
    seen.remember(newer)
    assert not seen.is_new(newer)
    assert seen.is_new(older) and seen.is_late(older)
    seen.remember(older)
    assert seen.is_late(env(IncidentEventType.resolved, 4))  # remembering the late one did not lower the mark
    assert not seen.is_late(env(IncidentEventType.enriched, 1)) and not seen.is_late(env(IncidentEventType.updated, 6))
    assert not seen.is_late(env(IncidentEventType.updated, 1, key="INC-000009"))
    for n in range(3):  # bounded: the oldest ids and incidents are forgotten
        seen.remember(env(IncidentEventType.updated, 1, key=f"INC-10000{n}"))
    assert seen.is_new(newer) and not seen.is_late(older)


def test_committed_asyncapi_document_is_what_the_code_generates() -> None:
    committed = Path("docs/asyncapi.json").read_text()
    assert committed == render(), "regenerate: python -m shared.asyncapi > docs/asyncapi.json"


def test_asyncapi_describes_every_incident_event_and_its_payload() -> None:
    doc = asyncapi_document()
    messages = doc["components"]["messages"]
    for ev in IncidentEventType:
        msg = messages[ev.value.replace(".", "_")]
        assert msg["x-routing-key"] == f"{ev.value}.<severity>"
        assert msg["payload"]["$ref"].startswith("#/components/schemas/")
    snapshot = doc["components"]["schemas"]["IncidentSnapshot"]
    assert {"key", "state", "severity", "revision"} <= set(snapshot["required"])
    assert doc["channels"]["incidents"]["address"] == "vigil.incidents"
    assert "Versioning" in doc["info"]["description"]
