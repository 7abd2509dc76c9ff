"""The read model's types: an incident, its alerts, its timeline and its enrichment, as every reader sees them.

An incident and its enrichment (one row each) are validated here, so readers get times in UTC and labels as strings
whatever the jsonb holds; alerts and timeline entries, thousands per incident, are plain dataclasses (see `Alert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


@dataclass(slots=True)
class Alert:
    """One alert occurrence of an incident (a row of `alerts`).

    A plain dataclass, not a validated model: an incident can have 10,000 alerts, and validating each cost the web
    a third of its incident page. The correlator, the only writer, stores what its contracts validated, and
    `shared.db`'s connections read times in UTC."""

    fingerprint: str
    alertname: str
    severity: str
    status: str
    starts_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    host: str | None = None
    ends_at: datetime | None = None
    resolved_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    generator_url: str = ""
    source: str = "alertmanager"
    sender: str = ""
    receiver: str = ""
    # What Vigil changed to store the alert within its limits (shared.contracts.AlertAdjustments); None: as sent.
    adjustments: dict[str, Any] | None = None
    # Alertmanager holds it back: None, "silenced" or "inhibited"; by which silences (with their author, comment and
    # end, as last polled) or inhibiting alerts' fingerprints; until when (the last silence's end).
    suppressed: str | None = None
    silenced_by: list[str] = field(default_factory=list)
    inhibited_by: list[str] = field(default_factory=list)
    suppressed_until: datetime | None = None
    silences: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        """A row of the read model's alert queries (their columns are this class's fields)."""
        return cls(**row)


@dataclass(slots=True)
class TimelineEntry:
    """One row of `incident_timeline`; `kind` is a `shared.contracts.TimelineKind` (or a newer correlator's)."""

    at: datetime
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TimelineEntry:
        return cls(**row)


class Enrichment(BaseModel):
    """The enricher's stored context of an incident (a row of `enrichments`). `context` is kept as stored: a reader
    decides what a context it cannot parse means (shared.incident_context.IncidentContext)."""

    version: int
    complete: bool
    context: dict[str, Any]
    created_at: UtcDatetime


class LastComment(BaseModel):
    """What a person last wrote on an incident: a comment, or the words given with an acknowledgement, a resolve or a
    reopen."""

    at: UtcDatetime
    actor: str | None = None
    text: str


class SimilarIncident(BaseModel):
    """An earlier incident whose signature is close to another's (shared.readmodel.incidents.similar): when it
    opened, how long it lasted, who acknowledged and resolved it, and its last comment."""

    key: str
    title: str
    state: str
    severity: str
    rule: str
    opened_at: UtcDatetime
    acknowledged_at: UtcDatetime | None = None
    acknowledged_by: str | None = None
    resolved_at: UtcDatetime | None = None
    resolved_by: str | None = None
    maintenance: str | None = None
    # The weighted Jaccard index of the two signatures as the fraction shared / either (shared.signatures).
    shared: int
    either: int
    last_comment: LastComment | None = None

    @property
    def similarity(self) -> float:
        """From 0 (nothing in common) to 1 (the same signature)."""
        return self.shared / self.either if self.either else 0.0

    @property
    def duration(self) -> timedelta | None:
        """Opened to resolved; None while it is not resolved."""
        return self.resolved_at - self.opened_at if self.resolved_at else None
