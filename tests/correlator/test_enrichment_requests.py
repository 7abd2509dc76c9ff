"""The enricher's work as the correlator asks for it (migration 0070, `request_enrichment`), against the real
PostgreSQL and RabbitMQ: subscribers see every change of an incident, the enricher one message per incident until it
takes the request, and at once for a resolve; a request whose message was lost is asked again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import psycopg

from services.correlator.store import ENRICHMENT_REQUEST_RENEW_S
from services.enricher.consumer import QUERIES as ENRICHER_QUERIES
from shared.config import Settings
from shared.messaging.topology import ENRICH_ROUTING_KEY, WORK_EXCHANGE
from tests.correlator.harness import T0, Harness, alert_envelope, correlator, count_is

TAP = "test.enrichment-requests"


@asynccontextmanager
async def work_tap(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue that gets a copy of every message to the enricher."""
    async with await aio_pika.connect(settings.amqp_url) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(TAP, exclusive=True)
        await queue.bind(WORK_EXCHANGE, ENRICH_ROUTING_KEY)
        yield queue


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[dict[str, Any]]:
    got = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        got.append(json.loads(message.body))
    return got


async def requests_after(h: Harness, queue: aio_pika.abc.AbstractQueue) -> list[tuple[str, str]]:
    """(type, change) of the messages to the enricher since the last call, once the incident events are out."""
    await h.events()  # waits until no more come: the requests go out in the same pass
    return [(m["type"], m["data"]["change"]) for m in await drain(queue)]


async def enricher_takes(settings: Settings, key: str) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(ENRICHER_QUERIES.take_enrichment_requests, {"keys": [key]})


async def test_a_growing_incident_is_one_enrichment_request_until_the_enricher_takes_it(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path) as h, work_tap(settings) as tap:
        await h.send_in_order(alert_envelope("HostDown"))
        opened = await requests_after(h, tap)
        [incident] = await h.incidents()
        key = incident["key"]
        # Two more batches, each growing the incident: subscribers see both, the enricher's request stands.
        await h.send_in_order(alert_envelope("DiskFull"), alert_envelope("CpuHot"))
        await h.settled(await count_is(h, 3))
        growth = await h.events()
        grown_unasked = await drain(tap)
        await enricher_takes(settings, key)
        await h.send_in_order(alert_envelope("MemoryLow"))
        asked_again = await requests_after(h, tap)
        # The request stands again; the resolve goes out at once all the same.
        resolved_at = T0 + timedelta(minutes=10)
        for name in ("HostDown", "DiskFull", "CpuHot", "MemoryLow"):
            await h.send_in_order(alert_envelope(name, status="resolved", received_at=resolved_at))
        await h.sweep(resolved_at + timedelta(minutes=6))
        on_resolve = await requests_after(h, tap)
        standing = await h.query("SELECT r.incident_id FROM enrichment_requests r")
    assert opened == [("incident.opened", "opened")]
    assert [(e["type"], e["data"]["change"]) for e in growth] == [("incident.updated", "alerts_added")] * 2
    assert grown_unasked == []
    assert asked_again == [("incident.updated", "alerts_added")]
    assert on_resolve == [("incident.resolved", "resolved")]
    assert standing == [{"incident_id": incident["id"]}]


async def test_a_request_whose_message_was_lost_is_asked_again(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h, work_tap(settings) as tap:
        await h.send_in_order(alert_envelope("HostDown"))
        await requests_after(h, tap)
        # Its message parked, say: the request stands with nobody to take it.
        await h.send_in_order(alert_envelope("DiskFull"))
        within = await requests_after(h, tap)
        await h.query(
            "UPDATE enrichment_requests SET requested_at = requested_at - make_interval(secs => %s) RETURNING 1",
            ENRICHMENT_REQUEST_RENEW_S + 1,
        )
        await h.send_in_order(alert_envelope("CpuHot"))
        renewed = await requests_after(h, tap)
        [request] = await h.query("SELECT requested_at > now() - interval '1 minute' AS fresh FROM enrichment_requests")
    assert within == []
    assert renewed == [("incident.updated", "alerts_added")]
    assert request["fresh"]


async def test_the_enricher_taking_a_request_waits_for_the_batch_that_holds_it(
    settings: Settings, tmp_path: Path
) -> None:
    """A batch that found the request standing holds its lock until it commits: the enricher's take waits, so the
    state it reads next holds that batch's change (or the batch, finding no request, asks again)."""
    async with correlator(settings, tmp_path) as h, work_tap(settings) as tap:
        await h.send_in_order(alert_envelope("HostDown"))
        await requests_after(h, tap)
        [incident] = await h.incidents()
        async with await psycopg.AsyncConnection.connect(settings.database_url) as batch:
            # As `request_enrichment` does for a standing request: conflict, no renewal, the row locked.
            await batch.execute(
                "INSERT INTO enrichment_requests AS q (incident_id, requested_at) VALUES (%s, now())"
                " ON CONFLICT (incident_id) DO UPDATE SET requested_at = now() WHERE false",
                (incident["id"],),
            )
            taking = asyncio.create_task(enricher_takes(settings, incident["key"]))
            await asyncio.sleep(0.5)
            waited = not taking.done()
            await batch.commit()
        await asyncio.wait_for(taking, 10)
        left = await h.query("SELECT incident_id FROM enrichment_requests")
    assert waited
    assert left == []
