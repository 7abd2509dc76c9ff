"""The enricher's message handler: incident event in → context computed, stored, `incident.enriched` out.

Acknowledged once the context is committed and the event confirmed; a dead Prometheus or Loki makes the
context partial, never the message fail. Only a failure of our own database or broker retries it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from services.enricher.config import EnrichmentConfig
from services.enricher.enrich import Upstreams, enrich
from services.enricher.plan import AlertFacts, IncidentFacts
from services.enricher.signature import log_signature
from shared.contracts import (
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentEventType,
    asks_for_enrichment,
    incident_routing_key,
)
from shared.db import Pool, Queries
from shared.jsonlog import incident_key
from shared.messaging import ENRICHER_QUEUE, Broker, Delivery, PermanentError
from shared.readmodel import incidents
from shared.readmodel.models import Alert, Incident

log = logging.getLogger(__name__)
QUERIES = Queries(Path(__file__).with_name("queries.sql"))

ENRICHMENT_SECONDS = Histogram(
    "vigil_enrichment_seconds",
    "Time to enrich one incident: read, query upstreams, store, publish",
    ["complete"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)

STEPS = Counter(
    "vigil_enrichment_steps_total",
    "What incident events led to: enrich, skip (state already enriched), defer (enriched within the interval) or "
    "coalesced (handled with another event of the same incident: one in the same batch, or a deferred copy already "
    "on its way back)",
    ["step"],
)

# An incident of thousands of alerts still needs only the first ones' starts on the timeline.
ALERT_LIMIT = 500


def next_step(row: Mapping[str, Any], *, growth: bool, now: datetime, interval: timedelta) -> str:
    """`enrich`, `skip` or `defer` an event about the incident whose `revision` and enrichment progress
    (`enrichment_progress` in queries.sql; its enrichment fields are None when never enriched) are in `row`.

    The enricher works on the incident as it is now, so an event whose incident has not changed since the last
    announced enrichment has nothing to add (skip). An incident that grows in a storm is enriched at most once per
    `interval`, like Alertmanager's group_interval: a growth event soon after an enrichment comes back later (defer)
    and then finds the latest state (one copy per incident and interval: later ones are coalesced into it). New,
    reopened and resolved incidents are enriched at once.
    """
    enriched = row.get("enriched_revision")
    if enriched is not None and enriched >= row["revision"] and row.get("enrichment_published"):
        return "skip"
    enriched_at = row.get("enriched_at")
    if growth and enriched_at is not None and now - enriched_at < interval:
        return "defer"
    return "enrich"


class IncidentRef(BaseModel):
    key: str


class EventHead(BaseModel):
    """What the enricher reads of an incident event: which incident, and what changed. It works on the incident as
    PostgreSQL has it, so validating the whole snapshot of every event in a storm would be work thrown away."""

    incident: IncidentRef
    change: str


async def _all_or_first_error(work: list[Coroutine[Any, Any, None]]) -> None:
    """Run `work` side by side to the end (none is cancelled halfway through a store), then raise the first error."""
    for result in await asyncio.gather(*work, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def facts_from(incident: Incident, alerts: list[Alert]) -> IncidentFacts:
    return IncidentFacts(
        id=incident.id,
        key=incident.key,
        revision=incident.revision,
        hosts=list(incident.hosts),
        first_alert_at=incident.first_alert_at,
        resolved_at=incident.resolved_at,
        alerts=[
            AlertFacts(
                alertname=a.alertname,
                host=a.host,
                labels=dict(a.labels),
                generator_url=a.generator_url,
                starts_at=a.starts_at,
                ends_at=a.ends_at,
                severity=a.severity,
            )
            for a in alerts
        ],
    )


@dataclass
class Enricher:
    pool: Pool
    broker: Broker
    config: EnrichmentConfig
    upstreams: Upstreams
    refresh_interval: timedelta = timedelta(seconds=10)
    # host:port of the Prometheus servers whose alert expressions may run (promql.trusted_hosts); empty: none.
    trusted_hosts: frozenset[str] = frozenset()
    # Incidents enriched at once, by all lanes together.
    concurrency: int = 4

    def __post_init__(self) -> None:
        self.working = asyncio.Semaphore(self.concurrency)

    async def handle(self, deliveries: list[Delivery]) -> None:
        """A batch of events: one decision per incident, from one query for all of them, and one enrichment per
        incident however many of its events the batch holds; the enrichments run side by side (at most
        `concurrency` at once, all lanes together), so one waiting on a slow upstream holds no other's work."""
        events: dict[str, list[tuple[Delivery, str]]] = {}
        for delivery in deliveries:
            envelope = delivery.envelope
            try:
                head = EventHead.model_validate(envelope.data)
            except ValidationError as exc:
                raise PermanentError(f"not an incident event: {exc.errors()[:3]}") from None
            if asks_for_enrichment(envelope.type, head.change):
                events.setdefault(head.incident.key, []).append((delivery, envelope.type))
        if not events:
            return
        async with self.pool.connection() as conn:
            # Taken before the progress is read, in its own statement (a newer snapshot than the delete's, which may
            # have waited for a correlator batch): whatever commits later asks for another enrichment.
            await conn.execute(QUERIES.take_enrichment_requests, {"keys": list(events)})
            cur = await conn.execute(QUERIES.enrichment_progress, {"keys": list(events)})
            progress = {row["key"]: row for row in await cur.fetchall()}
        missing = sorted(set(events) - set(progress))
        if missing:
            raise PermanentError(f"incident {', '.join(missing)} is not in the database (or not announced)")
        now = datetime.now(UTC)
        work = []
        put_off = []
        for key, about in events.items():
            # Growth only when every event of the batch is one: an opened, reopened or resolved one is enriched now.
            growth = all(event_type == IncidentEventType.updated for _, event_type in about)
            step = next_step(progress[key], growth=growth, now=now, interval=self.refresh_interval)
            if step == "defer":
                put_off.append(key)
                if not await self.broker.defer(about[-1][0], ENRICHER_QUEUE.name, subject=key):
                    step = "coalesced"
            STEPS.labels(step).inc()
            if len(about) > 1:
                STEPS.labels("coalesced").inc(len(about) - 1)
            if step == "enrich":
                work.append(self.enrich_key(key))
        if put_off:
            async with self.pool.connection() as conn:
                await conn.execute(QUERIES.keep_enrichment_requests, {"keys": put_off})
        await _all_or_first_error(work)

    async def enrich_key(self, key: str) -> None:
        token = incident_key.set(key)
        try:
            async with self.working:
                # One checkout, one transaction for both reads: each checkout costs a BEGIN and a COMMIT.
                async with self.pool.connection() as conn:
                    incident = await incidents.incident(conn, key)
                    if incident is None:
                        raise PermanentError(f"incident {key} is not in the database (or not announced)")
                    alerts = await incidents.alerts(conn, incident.id, limit=ALERT_LIMIT)
                await self.enrich_and_publish(incident, alerts)
        finally:
            incident_key.reset(token)

    async def enrich_and_publish(self, incident: Incident, alerts: list[Alert]) -> int | None:
        """Enrich `incident` as it is now, given its first ALERT_LIMIT `alerts`; returns the stored version, or None
        when a newer one was stored meanwhile."""
        started = time.perf_counter()
        facts = facts_from(incident, alerts)
        context = await enrich(
            facts, self.config, self.upstreams, now=datetime.now(UTC), trusted_hosts=self.trusted_hosts
        )
        templates = log_signature(context, self.config.loki)
        async with self.pool.connection() as conn:
            stored = await (
                await conn.execute(
                    QUERIES.upsert_enrichment,
                    {
                        "incident_id": facts.id,
                        "revision": facts.revision,
                        "complete": context.complete,
                        "context": Jsonb(context.model_dump(mode="json")),
                    },
                )
            ).fetchone()
            if stored is not None and templates is not None:
                # Same transaction: the signature describes the stored context.
                await conn.execute(QUERIES.replace_log_signature, {"incident_id": facts.id, "templates": templates})
        if stored is None:
            log.info("a newer revision is already enriched; nothing stored", extra={"revision": facts.revision})
            return None
        version = int(stored["version"])
        event = IncidentEvent(
            incident=incident.snapshot(),
            change="enriched",
            actor="enricher",
            detail={"complete": context.complete, "missing": context.missing, "version": version},
        )
        envelope = Envelope[IncidentEvent](type=IncidentEventType.enriched, producer="enricher", data=event)
        # If this raises, the broker retries the message and the enrichment is simply redone (idempotent).
        await self.broker.publish(
            INCIDENTS_EXCHANGE,
            incident_routing_key(IncidentEventType.enriched, incident.severity),
            envelope,
            mandatory=False,
        )
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES.mark_published, {"incident_id": facts.id, "version": version})
        ENRICHMENT_SECONDS.labels(str(context.complete).lower()).observe(time.perf_counter() - started)
        return version
