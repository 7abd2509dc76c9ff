"""Everything an incident report is made of, as plain data, and the one function that reads it (shared.readmodel).

The renderers (Markdown, XLSX, JSON) are pure functions of an `IncidentReport`: no clock, no I/O. Durations of an
incident still open are measured up to `as_of`, a time taken from the data itself (the latest change the database
knows of), so the same data always renders to the same bytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from pydantic import Field

from shared.incident_context import IncidentContext
from shared.readmodel import incidents
from shared.readmodel.models import Alert, Incident, IncidentFields, SimilarIncident, TimelineEntry, UtcDatetime

# The report's alerts and timeline entries are the read model's; the names say what a report calls them.
ReportAlert = Alert
__all__ = ["IncidentReport", "ReportAlert", "TimelineEntry", "UtcDatetime", "data_as_of", "load"]


class IncidentReport(IncidentFields):
    """The incident, its alerts and timeline, and the enricher's context (None when not enriched yet)."""

    alerts: list[Alert] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    context: IncidentContext | None = None
    context_version: int | None = None
    as_of: UtcDatetime = Field(description="The latest change in the data; open incidents are measured up to it.")
    alertmanager_url: str = Field("", description="Alertmanager's external URL, for silence links; empty: none.")
    similar: list[SimilarIncident] = Field(
        default_factory=list, description="Earlier incidents with the closest signatures, closest first."
    )

    @property
    def duration(self) -> timedelta:
        return (self.resolved_at or self.as_of) - self.opened_at

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        return self.acknowledged_at - self.opened_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self) -> timedelta | None:
        return self.resolved_at - self.opened_at if self.resolved_at else None


def data_as_of(incident: Incident, timeline: list[TimelineEntry], context: IncidentContext | None) -> datetime:
    """The newest moment the data describes: the incident's last change, its last timeline entry, its enrichment."""
    candidates = [incident.updated_at, incident.last_alert_at, incident.opened_at]
    candidates += [t for t in (incident.resolved_at, incident.acknowledged_at) if t is not None]
    if timeline:
        candidates.append(timeline[-1].at)
    if context is not None:
        candidates.append(context.generated_at)
    return max(candidates)


async def load(conn: psycopg.AsyncConnection[Any], key: str, *, alertmanager_url: str = "") -> IncidentReport | None:
    """The report data of incident `key` (a connection with dict rows), or None when there is no such incident (or
    it is not announced yet).

    Reads in one REPEATABLE READ snapshot when the caller has not opened a transaction, so the alerts, timeline,
    enrichment and similar incidents agree with each other.
    """
    async with incidents.reading_snapshot(conn) as snapshot:
        found = await incidents.whole(snapshot, key)
        if found is None:
            return None
        similar = await incidents.similar(snapshot, found.incident.id)
    incident, alerts, timeline, enrichment = found.incident, found.alerts, found.timeline, found.enrichment
    context = IncidentContext.model_validate(enrichment.context) if enrichment else None
    return IncidentReport(
        **incident.model_dump(exclude={"id", "updated_at"}),
        alerts=alerts,
        timeline=timeline,
        context=context,
        context_version=enrichment.version if enrichment else None,
        as_of=data_as_of(incident, timeline, context),
        alertmanager_url=alertmanager_url,
        similar=similar,
    )
