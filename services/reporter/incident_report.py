"""Everything an incident report is made of, as plain data, and the one function that reads it from PostgreSQL.

The renderers (Markdown, XLSX, JSON) are pure functions of an `IncidentReport`: no clock, no I/O. Durations of an
incident still open are measured up to `as_of`, a time taken from the data itself (the latest change the database
knows of), so the same data always renders to the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field

from services.reporter.queries import QUERIES
from shared.incident_context import IncidentContext


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _string_values(value: Any) -> Any:
    # Labels and annotations are strings in Alertmanager's model; anything else stored in the jsonb is shown as text.
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
StringMap = Annotated[dict[str, str], BeforeValidator(_string_values)]


class ReportAlert(BaseModel):
    """One alert occurrence of the incident (a row of `alerts`)."""

    fingerprint: str
    alertname: str
    severity: str
    host: str | None = None
    status: str
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None
    first_seen_at: UtcDatetime
    last_seen_at: UtcDatetime
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    generator_url: str = ""
    source: str = "alertmanager"
    sender: str = ""
    receiver: str = ""
    # What Vigil changed to store the alert within its limits (shared.contracts.AlertAdjustments); None: as sent.
    adjustments: dict[str, Any] | None = None


class TimelineEntry(BaseModel):
    """One row of `incident_timeline`; `kind` is from the shared vocabulary (incident_opened, alert_added, ...)."""

    at: UtcDatetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class IncidentReport(BaseModel):
    """The incident, its alerts and timeline, and the enricher's context (None when not enriched yet)."""

    key: str
    title: str
    state: str
    severity: str
    rule: str
    group_labels: StringMap = Field(default_factory=dict)
    hosts: list[str] = Field(default_factory=list)
    flapping: bool = False
    revision: int
    alert_count: int
    firing_count: int
    opened_at: UtcDatetime
    first_alert_at: UtcDatetime
    last_alert_at: UtcDatetime
    acknowledged_at: UtcDatetime | None = None
    acknowledged_by: str | None = None
    resolved_at: UtcDatetime | None = None
    resolved_by: str | None = None
    alerts: list[ReportAlert] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    context: IncidentContext | None = None
    context_version: int | None = None
    as_of: UtcDatetime = Field(description="The latest change in the data; open incidents are measured up to it.")
    alertmanager_url: str = Field("", description="Alertmanager's external URL, for silence links; empty: none.")

    @property
    def duration(self) -> timedelta:
        return (self.resolved_at or self.as_of) - self.opened_at

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        return self.acknowledged_at - self.opened_at if self.acknowledged_at else None

    @property
    def time_to_resolve(self) -> timedelta | None:
        return self.resolved_at - self.opened_at if self.resolved_at else None


def data_as_of(incident: dict[str, Any], timeline: list[TimelineEntry], context: IncidentContext | None) -> datetime:
    """The newest moment the data describes: the incident's last change, its last timeline entry, its enrichment."""
    candidates = [incident["updated_at"], incident["last_alert_at"], incident["opened_at"]]
    candidates += [t for t in (incident.get("resolved_at"), incident.get("acknowledged_at")) if t is not None]
    if timeline:
        candidates.append(timeline[-1].at)
    if context is not None:
        candidates.append(context.generated_at)
    return max(candidates)


async def load(conn: psycopg.AsyncConnection[Any], key: str, *, alertmanager_url: str = "") -> IncidentReport | None:
    """The report data of incident `key` (a connection with dict rows), or None when there is no such incident.

    Reads in one REPEATABLE READ snapshot when the caller has not opened a transaction, so the alerts, timeline and
    enrichment agree with each other.
    """
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await _load(conn, key, alertmanager_url)
    return await _load(conn, key, alertmanager_url)


async def _load(conn: psycopg.AsyncConnection[Any], key: str, alertmanager_url: str) -> IncidentReport | None:
    cur = await conn.execute(QUERIES.incident_by_key, {"key": key})
    incident = await cur.fetchone()
    if incident is None:
        return None
    ids = {"incident_id": incident["id"]}
    alerts = await (await conn.execute(QUERIES.incident_alerts, ids)).fetchall()
    timeline = [TimelineEntry(**row) for row in await (await conn.execute(QUERIES.incident_timeline, ids)).fetchall()]
    enrichment = await (await conn.execute(QUERIES.incident_enrichment, ids)).fetchone()
    context = IncidentContext.model_validate(enrichment["context"]) if enrichment else None
    return IncidentReport(
        **{k: v for k, v in incident.items() if k not in {"id", "updated_at"}},
        alerts=[ReportAlert(**row) for row in alerts],
        timeline=timeline,
        context=context,
        context_version=enrichment["version"] if enrichment else None,
        as_of=data_as_of(incident, timeline, context),
        alertmanager_url=alertmanager_url,
    )
