"""Message contracts: the envelope and every payload that crosses RabbitMQ.

These models are the public interface for outside subscribers (see `shared/asyncapi.py`). Versioning
rule: adding an optional field keeps `version`; renaming, removing or changing the meaning of a field
bumps it, and producers publish both versions for a deprecation period.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T", bound=BaseModel)

# Exchanges (topic) and what is published on them.
ALERTS_EXCHANGE = "vigil.alerts"  # alert.<status>.<severity>.<alertname>
INCIDENTS_EXCHANGE = "vigil.incidents"  # incident.<event>.<severity>, report.ready.<severity>
COMMANDS_EXCHANGE = "vigil.commands"  # command.<action>


def utcnow() -> datetime:
    return datetime.now(UTC)


class MessageType(StrEnum):
    """`type` of the envelopes that are not incident events (those are `IncidentEventType`) or commands
    (`command_type`)."""

    alert_received = "alert.received"
    alerts_received = "alerts.received"
    report_ready = "report.ready"


COMMAND_TYPE_PREFIX = "command."


def command_type(action: str) -> str:
    """`command.<action>`, e.g. `command.acknowledge`."""
    return f"{COMMAND_TYPE_PREFIX}{action}"


class Envelope(BaseModel, Generic[T]):
    """What every message is: an id for idempotence, a type to dispatch on, and the payload."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    producer: str
    data: T


class RawEnvelope(BaseModel):
    """An envelope whose payload is not decoded yet: consumers dispatch on `type` first."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    type: str
    version: int = 1
    occurred_at: AwareDatetime
    producer: str
    data: dict[str, Any]


# --- Alertmanager webhook, version 4 -------------------------------------------------------------


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class WebhookAlert(BaseModel):
    """One alert as Alertmanager's webhook sends it; Grafana adds fields, which are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt")
    # Alertmanager sends "0001-01-01T00:00:00Z" for alerts without an end.
    ends_at: AwareDatetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""

    @field_validator("ends_at", mode="after")
    @classmethod
    def _zero_time_is_none(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.year <= 1:
            return None
        return value


class AlertmanagerWebhook(BaseModel):
    """The body of Alertmanager's `webhook_config` notification (payload version 4)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: str = "4"
    group_key: str = Field(alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")
    alerts: list[WebhookAlert]


# --- Generic events (Fail2Ban, Xray, scripts) ----------------------------------------------------


class Severity(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    none = "none"


SEVERITY_RANK: dict[str, int] = {"critical": 4, "error": 3, "warning": 2, "info": 1, "none": 0}


def severity_rank(value: str | None) -> int:
    """Unknown severities rank like `warning`: an alert with an odd label must not vanish below info."""
    if not value:
        return SEVERITY_RANK["none"]
    return SEVERITY_RANK.get(value.lower(), SEVERITY_RANK["warning"])


class GenericEvent(BaseModel):
    """An event from a system that is not Alertmanager: a ban, a log watcher, a cron script."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=200, description="What sent it, e.g. fail2ban.")
    host: str = Field(min_length=1, max_length=255, description="The host the event is about.")
    kind: str = Field(min_length=1, max_length=200, description="What happened, e.g. ban; becomes alertname.")
    severity: Severity = Severity.warning
    status: AlertStatus = AlertStatus.firing
    labels: dict[str, str] = Field(default_factory=dict)
    message: str = Field("", max_length=65_536)
    time: AwareDatetime = Field(default_factory=utcnow)
    ends_at: AwareDatetime | None = None


# --- What ingest publishes on vigil.alerts -------------------------------------------------------


class AlertSource(StrEnum):
    alertmanager = "alertmanager"
    event = "event"


class AlertAdjustments(BaseModel):
    """What Vigil changed in an alert to store it (see shared/alert_limits.py), and what the sender sent where it is
    small enough to keep. Absent (null) when the alert was stored as sent."""

    model_config = ConfigDict(frozen=True)

    cut: dict[str, int] = Field(
        default_factory=dict,
        description="Bytes cut, by field: `labels.<name>`, `label_names.<name>`, `annotations.<name>`, "
        "`annotation_names.<name>`, `generatorURL`, `receiver`, `group_key`, `group_labels.<name>`, `externalURL`. "
        "A cut value ends with a marker such as `…[cut 3,912 bytes]`.",
    )
    dropped_labels: int = Field(0, ge=0, description="Labels past the per-alert limit, not stored.")
    dropped_annotations: int = Field(0, ge=0, description="Annotations past the per-alert limit, not stored.")
    fingerprint: str | None = Field(None, description="The fingerprint as sent, when it was replaced by a hash.")
    starts_at: str | None = Field(None, description="startsAt as sent, when the receipt time replaced it.")
    ends_at: str | None = Field(None, description="endsAt as sent, when it was dropped as impossible.")
    generator_url: str | None = Field(None, description="The start of a generatorURL too long to keep as a link.")


class AlertReceived(BaseModel):
    """One alert of a notification (or one generic event as an alert), as the correlator consumes it.

    type `alert.received`, routing key `alert.<status>.<severity>.<alertname>`.
    """

    model_config = ConfigDict(frozen=True)

    alert: WebhookAlert
    source: AlertSource
    sender: str
    receiver: str = ""
    group_key: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    received_at: AwareDatetime
    adjusted: AlertAdjustments | None = Field(
        None, description="What ingest changed to keep the alert within Vigil's limits; null: stored as sent."
    )


class AlertsReceived(BaseModel):
    """The alerts of one Alertmanager notification, as the correlator consumes them: each one as an `alert.received`
    message would carry it. One message per notification instead of one per alert: in a storm of 50-alert
    notifications, receiving each alert as a message of its own was a fifth of the correlator's work and most of the
    broker's. Should one alert of it fail, the correlator sends each alert round as a message of its own, so that the
    alert at fault fails alone.

    type `alerts.received`, routing key `alerts.<source>`.
    """

    model_config = ConfigDict(frozen=True)

    alerts: list[AlertReceived] = Field(min_length=1)


# --- Incident events on vigil.incidents ---------------------------------------------------------


class IncidentState(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class IncidentEventType(StrEnum):
    opened = "incident.opened"
    updated = "incident.updated"
    acknowledged = "incident.acknowledged"
    resolved = "incident.resolved"
    reopened = "incident.reopened"
    enriched = "incident.enriched"


# New, reopened and resolved incidents are enriched at once; one that grows, at most once per refresh interval.
ENRICHED_AT_ONCE = frozenset({IncidentEventType.opened, IncidentEventType.reopened, IncidentEventType.resolved})


def asks_for_enrichment(event_type: str, change: str) -> bool:
    """Whether an incident event means its incident is to be enriched (again): new incidents, incidents that gained
    alerts, reopened ones, and the final window of resolved ones."""
    if event_type in ENRICHED_AT_ONCE:
        return True
    return event_type == IncidentEventType.updated and change == "alerts_added"


class TimelineKind(StrEnum):
    """`kind` of an incident's timeline entries (`incident_timeline.kind`, the API and reports)."""

    incident_opened = "incident_opened"
    alert_added = "alert_added"
    alert_resolved = "alert_resolved"
    alert_stale = "alert_stale"
    alert_refired = "alert_refired"
    # Alertmanager silenced or inhibited it (detail: silence ids, inhibiting fingerprints, until), or stopped doing so.
    alert_silenced = "alert_silenced"
    alert_unsilenced = "alert_unsilenced"
    severity_changed = "severity_changed"
    flapping_started = "flapping_started"
    flapping_stopped = "flapping_stopped"
    incident_acknowledged = "incident_acknowledged"
    incident_resolved = "incident_resolved"
    incident_reopened = "incident_reopened"
    comment = "comment"


class IncidentChange(StrEnum):
    """`change` of an incident event: what happened, finer than its type (`incident.updated` covers most)."""

    opened = "opened"
    alerts_added = "alerts_added"
    alert_resolved = "alert_resolved"
    alert_stale = "alert_stale"
    alert_silenced = "alert_silenced"  # silenced or inhibited in Alertmanager, or silenced from Vigil
    alert_unsilenced = "alert_unsilenced"
    severity_changed = "severity_changed"
    flapping_started = "flapping_started"
    flapping_stopped = "flapping_stopped"
    acknowledged = "acknowledged"
    resolved = "resolved"
    reopened = "reopened"
    comment = "comment"


class IncidentSnapshot(BaseModel):
    """The incident as it is after the change the event announces."""

    key: str = Field(description="Human key, e.g. INC-000123.")
    title: str
    state: IncidentState
    severity: str
    rule: str = Field(description="Name of the correlation rule that grouped it.")
    group_labels: dict[str, str]
    hosts: list[str]
    alert_count: int
    firing_count: int
    flapping: bool = False
    revision: int = Field(description="Increases with every change; consumers keep the highest seen.")
    opened_at: AwareDatetime
    first_alert_at: AwareDatetime
    last_alert_at: AwareDatetime
    acknowledged_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None


def snapshot_of(incident: object) -> IncidentSnapshot:
    """The snapshot of anything that has an incident's fields by the same names (the correlator's working
    `Incident`, the read model's). Built without validation: both are typed already, and the correlator takes one
    per alert change."""
    values = {name: getattr(incident, name) for name in IncidentSnapshot.model_fields}
    values["state"] = IncidentState(values["state"])
    values["group_labels"] = dict(values["group_labels"])
    values["hosts"] = list(values["hosts"])
    return IncidentSnapshot.model_construct(**values)


class IncidentEvent(BaseModel):
    """Data of every `incident.*` event; `change` says what happened, e.g. `alerts_added`."""

    incident: IncidentSnapshot
    change: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ReportReady(BaseModel):
    """`report.ready`: a new version of an incident's reports is stored."""

    key: str
    report_version: int
    # What the version can be downloaded as: all three, though only md and json are stored (the web renders the XLSX
    # from the JSON at its first download).
    formats: list[Literal["md", "xlsx", "json"]]


# --- Commands from the web to the correlator ----------------------------------------------------


class CommandAction(StrEnum):
    acknowledge = "acknowledge"
    resolve = "resolve"
    reopen = "reopen"
    comment = "comment"
    # The web made (or expired) a silence in Alertmanager for the incident's group: recorded in its timeline.
    silence = "silence"
    unsilence = "unsilence"


class IncidentCommand(BaseModel):
    """`command.<action>`: a person asks the correlator, the only writer of incidents, to change one."""

    key: str = Field(pattern=r"^INC-\d{6,}$")
    action: CommandAction
    actor: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=65_536)
    requested_at: AwareDatetime = Field(default_factory=utcnow)
    silence_id: str = Field("", max_length=200, description="silence and unsilence: Alertmanager's silence id.")
    until: AwareDatetime | None = Field(None, description="silence: when the silence ends.")


def alert_routing_key(status: str, severity: str | None, alertname: str | None) -> str:
    """`alert.<status>.<severity>.<alertname>` with each part safe as one topic word."""
    parts = (status, severity or "none", alertname or "")
    return "alert." + ".".join(topic_word(part) for part in parts)


def alerts_routing_key(source: str) -> str:
    """`alerts.<source>`, e.g. `alerts.alertmanager`: the routing key of an `alerts.received` message."""
    return "alerts." + topic_word(source)


def incident_routing_key(event: IncidentEventType | str, severity: str) -> str:
    """`incident.<event>.<severity>`, e.g. `incident.opened.critical`."""
    return f"{event}.{topic_word(severity)}"


TOPIC_WORD_MAX_BYTES = 60


def topic_word(value: str) -> str:
    """A value as one word of a topic routing key: dots and wildcards would change its meaning.

    At most 60 bytes of UTF-8 (cut on a character boundary), so four words stay inside AMQP's 255-byte key."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_:" else "_" for ch in value[:TOPIC_WORD_MAX_BYTES])
    return cleaned.encode()[:TOPIC_WORD_MAX_BYTES].decode(errors="ignore") or "_"
