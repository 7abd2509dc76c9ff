"""The read model's types: an incident, its alerts, its timeline and its enrichment, as every reader sees them.

Rows are validated once here, so readers get times in UTC and labels as strings whatever the jsonb holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field

from shared.contracts import IncidentSnapshot, snapshot_of


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _string_values(value: Any) -> Any:
    # Labels and annotations are strings in Alertmanager's model; anything else stored in the jsonb is shown as text.
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
StringMap = Annotated[dict[str, str], BeforeValidator(_string_values)]


class IncidentFields(BaseModel):
    """What an incident is (a row of `incidents`), without the database's own bookkeeping."""

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
    # The maintenance window (by name) the correlator put it in; None: a real incident. Left out of MTTA/MTTR.
    maintenance: str | None = None


class Incident(IncidentFields):
    """An incident as read: `id` to read its alerts, timeline and enrichment by, `updated_at` its last change."""

    id: int
    updated_at: UtcDatetime

    def snapshot(self) -> IncidentSnapshot:
        """The incident as an event announces it."""
        return snapshot_of(self)


class Alert(BaseModel):
    """One alert occurrence of an incident (a row of `alerts`)."""

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
    # Alertmanager holds it back: None, "silenced" or "inhibited"; by which silences (with their author, comment and
    # end, as last polled) or inhibiting alerts' fingerprints; until when (the last silence's end).
    suppressed: str | None = None
    silenced_by: list[str] = Field(default_factory=list)
    inhibited_by: list[str] = Field(default_factory=list)
    suppressed_until: UtcDatetime | None = None
    silences: list[dict[str, Any]] = Field(default_factory=list)


class TimelineEntry(BaseModel):
    """One row of `incident_timeline`; `kind` is a `shared.contracts.TimelineKind` (or a newer correlator's)."""

    at: UtcDatetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Enrichment(BaseModel):
    """The enricher's stored context of an incident (a row of `enrichments`). `context` is kept as stored: a reader
    decides what a context it cannot parse means (shared.incident_context.IncidentContext)."""

    version: int
    complete: bool
    context: dict[str, Any]
    created_at: UtcDatetime
