"""The reporter's message handler: `incident.enriched` / `incident.resolved` in, stored reports and `report.ready`
out. Wiring only: loading, rendering and the version rule live in their own modules."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from services.reporter.queries import QUERIES
from services.reporter.report_store import Stored, store
from services.reporter.versions import Source
from shared.contracts import (
    INCIDENTS_EXCHANGE,
    Envelope,
    IncidentEvent,
    IncidentEventType,
    MessageType,
    ReportReady,
    topic_word,
)
from shared.db import Pool
from shared.jsonlog import incident_key
from shared.messaging import REPORTER_QUEUE, Broker, Delivery, PermanentError
from shared.readmodel import incidents
from shared.reports import incident_report
from shared.reports.rendering import FORMATS, RENDERED, render_all

log = logging.getLogger(__name__)

VERSIONS = Counter(
    "vigil_report_versions_total",
    "Events that were rendered (new version or unchanged), skipped (state already reported), superseded (a newer "
    "enrichment is announced, or reports of a newer state were stored while rendering) or deferred",
    ["outcome"],
)

# Reports of up to this many alerts are rendered on the event loop, larger ones in a thread. Measured (Markdown and
# JSON, 2-core machine): 9 ms for 100 alerts, 16 ms for 300, 38 ms for 1,000. The handler waits for the rendering
# either way, so a thread only keeps heartbeats and scrapes answered meanwhile, and it costs memory for good: glibc
# gives it an arena of its own that keeps the high-water mark of the largest report it rendered (2 MB of the
# reporter's growth in a 10-minute soak whose incidents grew to 300 alerts).
INLINE_RENDER_ALERTS = 1_000

HANDLED_TYPES = {IncidentEventType.enriched.value, IncidentEventType.resolved.value}
# Namespace of report.ready message ids: the same stored version always announces itself with the same id, so a
# subscriber can drop the duplicate a redelivered event produces.
REPORT_READY_NAMESPACE = uuid.UUID("5d0c7f3e-6a4f-4b7e-9d1e-2f7b0c9a4e11")


def next_step(
    freshness: dict[str, Any],
    *,
    event_type: str,
    now: datetime,
    interval: timedelta,
    enrichment_version: int | None = None,
) -> str:
    """`render`, `skip`, `superseded` or `defer` an event about an incident, given what its newest reports were
    rendered from (`enrichment_version`: the version an `incident.enriched` event announces).

    Reports already showing this revision and enrichment, and announced, have nothing to add (skip). An
    `incident.enriched` event older than the stored enrichment is superseded: the newer enrichment's own event is
    on its way (the enricher announces every version it stores, or a newer one), and rendering now would only be
    redone then. While an open incident keeps being re-enriched in a storm, it is rendered at most once per
    `interval`: an event soon after a rendering comes back later (defer) and then renders the latest state. A
    resolved incident renders at once.
    """
    reported = freshness["reported_revision"]
    if (
        reported is not None
        and reported >= freshness["revision"]
        and freshness["reported_enrichment_version"] == freshness["enrichment_version"]
        and freshness["published"]
    ):
        return "skip"
    stored = freshness["enrichment_version"]
    enriched = event_type == IncidentEventType.enriched.value
    if enriched and enrichment_version is not None and stored is not None and enrichment_version < stored:
        return "superseded"
    rendered_at = freshness["rendered_at"]
    growing = enriched and freshness["state"] != "resolved"
    if growing and rendered_at is not None and now - rendered_at < interval:
        return "defer"
    return "render"


def report_ready_envelope(stored: Stored, formats: list[str]) -> Envelope[ReportReady]:
    return Envelope(
        id=uuid.uuid5(REPORT_READY_NAMESPACE, f"{stored.key}/{stored.version}"),
        type=MessageType.report_ready,
        producer="reporter",
        data=ReportReady(key=stored.key, report_version=stored.version, formats=formats),
    )


@dataclass
class ReportHandler:
    pool: Pool
    broker: Broker
    alertmanager_url: str = ""
    refresh_interval: timedelta = timedelta(seconds=10)

    async def __call__(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.handle(delivery)

    async def handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if envelope.type not in HANDLED_TYPES:
            log.info("ignored", extra={"type": envelope.type, "message_id": str(envelope.id)})
            return
        try:
            event = IncidentEvent.model_validate(envelope.data)
        except ValidationError as exc:
            raise PermanentError(f"{envelope.type} without a valid IncidentEvent: {exc.errors()[:3]}") from exc
        key = event.incident.key
        version = event.detail.get("version")
        token = incident_key.set(key)
        try:
            await self.render_and_store(
                key, envelope.type, delivery, enrichment_version=version if isinstance(version, int) else None
            )
        finally:
            incident_key.reset(token)

    async def render_and_store(
        self, key: str, cause: str, delivery: Delivery | None = None, *, enrichment_version: int | None = None
    ) -> Stored | None:
        """Render, store and announce the incident's reports; None when they already show its current state, or
        the event was superseded or deferred (see `next_step`), or reports of a newer state were stored while this
        rendering ran (superseded too: see `versions.decide`; nothing stored, nothing announced)."""
        # What the reports were rendered from and what they will show, read in one snapshot.
        report = None
        async with self.pool.connection() as conn, incidents.reading_snapshot(conn) as snapshot:
            freshness = await (await snapshot.execute(QUERIES.report_freshness, {"key": key})).fetchone()
            step = (
                "render"
                if freshness is None
                else next_step(
                    freshness,
                    event_type=cause,
                    now=datetime.now(UTC),
                    interval=self.refresh_interval,
                    enrichment_version=enrichment_version,
                )
            )
            if step == "render":
                report = await incident_report.load(snapshot, key, alertmanager_url=self.alertmanager_url)
        # The deferred copy is published once the connection is back in the pool, not while it holds a transaction.
        if step != "render":
            VERSIONS.labels(step).inc()
            if step == "defer" and delivery is not None:
                await self.broker.defer(delivery, REPORTER_QUEUE.name)
            return None
        if report is None:
            raise PermanentError(f"incident {key} does not exist")
        # Rendering 10,000 alerts takes about 0.4 s of CPU: off the event loop, so heartbeats and acks go on.
        # Smaller reports render inline (see INLINE_RENDER_ALERTS): handing them to a thread costs more than it
        # saves, and the thread then contends with the loop for the GIL.
        if len(report.alerts) <= INLINE_RENDER_ALERTS:
            rendered = render_all(report)
        else:
            rendered = await asyncio.to_thread(render_all, report)
        for fmt in rendered:
            RENDERED.labels(fmt).inc()
        source = Source(report.revision, report.context_version)
        async with self.pool.connection() as conn:
            stored = await store(conn, key, rendered, source, state=report.state)
        if stored is None:
            raise PermanentError(f"incident {key} does not exist")
        VERSIONS.labels(stored.outcome).inc()
        if stored.outcome == "superseded":
            log.info(
                "reports superseded",
                extra={"cause": cause, "report_version": stored.version, "revision": source.incident_revision},
            )
            return None
        # Every format, stored or not: the version's XLSX is rendered from its stored JSON when downloaded.
        await self.broker.publish(
            INCIDENTS_EXCHANGE,
            f"report.ready.{topic_word(stored.severity)}",
            report_ready_envelope(stored, list(FORMATS)),
            mandatory=False,
        )
        async with self.pool.connection() as conn:
            await conn.execute(QUERIES.mark_report_published, {"key": key, "report_version": stored.version})
        log.info(
            "reports stored" if stored.new else "reports unchanged",
            extra={"cause": cause, "report_version": stored.version, "alerts": len(report.alerts)},
        )
        return stored
