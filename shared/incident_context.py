"""What the enricher learns about an incident, stored as JSON in `enrichments.context` and read by the
reporter and the web. Kept compact: series are downsampled, log excerpts are capped."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field


class SeriesSummary(BaseModel):
    """One Prometheus series over the incident window, summarised."""

    name: str = Field(description="What it measures, e.g. `cpu`, `memory`, or `alert expression`.")
    query: str
    labels: dict[str, str]
    unit: str = ""
    min: float | None = None
    avg: float | None = None
    max: float | None = None
    p95: float | None = None
    peak: float | None = None
    peak_at: AwareDatetime | None = None
    baseline: float | None = Field(None, description="Typical value before the first alert.")
    deviation_at: AwareDatetime | None = Field(None, description="When it started to leave its baseline.")
    points: list[tuple[AwareDatetime, float]] = Field(default_factory=list, description="Downsampled.")
    bands: list[tuple[AwareDatetime, float, float]] = Field(
        default_factory=list,
        description="Per point of `points` (same times): the lowest and highest sample of its step, so a spike "
        "shorter than a step shows. Empty in contexts from before it was collected.",
    )


class LogLine(BaseModel):
    at: AwareDatetime
    labels: dict[str, str]
    line: str


class LogBurst(BaseModel):
    """Error lines counted per minute."""

    minute: AwareDatetime
    errors: int


class SecurityEvent(BaseModel):
    at: AwareDatetime
    action: str = Field(description="ban, unban, or another action the parser recognised.")
    ip: str
    jail: str = ""
    host: str = ""
    line: str = ""


class ContextEvent(BaseModel):
    """One entry of the linked timeline: alerts, metric peaks and log bursts side by side."""

    at: AwareDatetime
    kind: Literal["alert_start", "alert_end", "metric_peak", "metric_deviation", "log_burst", "security"]
    title: str
    detail: dict[str, str | float | int | None] = Field(default_factory=dict)


class UpstreamStatus(BaseModel):
    name: Literal["prometheus", "loki"]
    ok: bool
    queries: int = 0
    failed: int = 0
    error: str | None = None


class IncidentContext(BaseModel):
    incident_key: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    generated_at: AwareDatetime
    complete: bool = Field(description="False when an upstream failed; `missing` says what and why.")
    missing: list[str] = Field(default_factory=list)
    upstreams: list[UpstreamStatus] = Field(default_factory=list)
    metrics: list[SeriesSummary] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    log_lines_total: int = 0
    error_bursts: list[LogBurst] = Field(default_factory=list)
    security_events: list[SecurityEvent] = Field(default_factory=list)
    timeline: list[ContextEvent] = Field(default_factory=list)
