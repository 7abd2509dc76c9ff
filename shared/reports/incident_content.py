"""What every incident report says, derived once from an `IncidentReport`: the Markdown, XLSX and JSON renderers
all present this same content, so the three formats cannot disagree. It is also exactly the JSON export
(docs/report-schema.json).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from itertools import islice
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from shared.alert_limits import describe_adjustments
from shared.incident_context import ContextEvent, IncidentContext
from shared.matchers import MatchType, new_matcher
from shared.readmodel.models import SimilarIncident
from shared.reports.incident_report import IncidentReport, ReportAlert, TimelineEntry, UtcDatetime
from shared.timeline import describe
from shared.urls import is_web_url

SCHEMA_VERSION = 1
# Annotations that say what to do about an alert, in the order a reader wants them.
ADVICE_ANNOTATIONS = ("summary", "description", "actions")
RUNBOOK_ANNOTATIONS = ("runbook_url", "runbook")
MAX_VARIANTS = 3
MAX_ACTIONS = 10


class Summary(BaseModel):
    key: str
    title: str
    state: str
    severity: str
    rule: str
    hosts: list[str]
    group_labels: dict[str, str]
    flapping: bool
    maintenance: str | None = Field(
        default=None,
        description="The maintenance window it was opened in (planned work, left out of the audit's MTTA/MTTR); "
        "null: a real incident.",
    )
    revision: int
    alert_count: int
    firing_count: int
    opened_at: UtcDatetime
    first_alert_at: UtcDatetime
    last_alert_at: UtcDatetime
    acknowledged_at: UtcDatetime | None
    acknowledged_by: str | None
    resolved_at: UtcDatetime | None
    resolved_by: str | None
    ended_at: UtcDatetime | None = Field(description="When it ended: its resolution time; null while unresolved.")
    as_of: UtcDatetime = Field(description="The latest change in the data; durations of open incidents run to it.")
    duration_seconds: float = Field(description="Opened to resolved, or to `as_of` while unresolved.")
    time_to_acknowledge_seconds: float | None
    time_to_resolve_seconds: float | None


class AlertRow(BaseModel):
    fingerprint: str
    alertname: str
    severity: str
    host: str | None
    status: str
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None
    duration_seconds: float | None = Field(description="starts_at to ends_at; null while the alert fires.")
    summary: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    source: str
    adjusted: list[str] = Field(
        default_factory=list,
        description="What Vigil changed to store the alert within its limits, and what was sent; empty: as sent.",
    )
    suppression: str | None = Field(
        None,
        description="What Alertmanager holds the alert back by, as last polled: silenced (by whom, until when, "
        "why) or inhibited (by which alerts); null: nothing.",
    )


class TimelineRow(BaseModel):
    at: UtcDatetime
    source: Literal["incident", "enrichment"]
    kind: str
    actor: str | None
    text: str


class MetricRow(BaseModel):
    name: str
    query: str
    labels: dict[str, str]
    unit: str
    min: float | None
    avg: float | None
    max: float | None
    p95: float | None
    peak: float | None
    peak_at: UtcDatetime | None
    baseline: float | None
    deviation_at: UtcDatetime | None
    points: list[tuple[UtcDatetime, float]]
    bands: list[tuple[UtcDatetime, float, float]] = Field(
        default_factory=list,
        description="Per point (same times): the lowest and highest sample of its step; empty when not collected.",
    )


class LogRow(BaseModel):
    at: UtcDatetime
    labels: dict[str, str]
    line: str


class BurstRow(BaseModel):
    minute: UtcDatetime
    errors: int


class SecurityRow(BaseModel):
    at: UtcDatetime
    action: str
    ip: str
    jail: str
    host: str
    line: str


class Logs(BaseModel):
    lines_total: int = Field(description="Log lines the enricher matched in the window; `excerpt` is capped.")
    excerpt: list[LogRow]
    error_bursts: list[BurstRow]


class Recommendation(BaseModel):
    """What the alerts' own annotations advise, once per alert name.

    In a storm every alert of a name has its own summary; the distinct texts are listed most frequent first, capped
    at `MAX_VARIANTS` each, with `alerts` saying how many alerts the advice stands for.
    """

    alertname: str
    alerts: int
    summaries: list[str]
    descriptions: list[str]
    actions: list[str]
    runbook_urls: list[str]


class Link(BaseModel):
    kind: Literal["source", "runbook", "silence"]
    alertname: str
    url: str


class SimilarRow(BaseModel):
    """An earlier incident with a signature close to this one's (rule, group labels, alert names, templates of the
    error-burst log lines): when, how long, who acknowledged and resolved it, its last comment."""

    key: str
    title: str
    state: str
    severity: str
    opened_at: UtcDatetime
    duration_seconds: float | None = Field(description="Opened to resolved; null while it is not resolved.")
    acknowledged_at: UtcDatetime | None
    acknowledged_by: str | None
    resolved_at: UtcDatetime | None
    resolved_by: str | None
    last_comment: str | None = Field(description="Its newest comment; null: nobody commented.")
    last_comment_by: str | None
    last_comment_at: UtcDatetime | None
    similarity: float = Field(
        description="Weighted Jaccard index of the two signatures, from 0 to 1 (the same signature), 4 decimals."
    )
    path: str = Field(description="Its page on the Vigil dashboard, relative to the dashboard's address.")


class Enrichment(BaseModel):
    version: int | None
    complete: bool
    missing: list[str]
    window_start: UtcDatetime
    window_end: UtcDatetime
    generated_at: UtcDatetime
    upstreams: list[dict[str, object]]


class IncidentContent(BaseModel):
    schema_version: int = SCHEMA_VERSION
    summary: Summary
    timeline: list[TimelineRow]
    alerts: list[AlertRow]
    metrics: list[MetricRow]
    logs: Logs
    security_events: list[SecurityRow]
    recommendations: list[Recommendation]
    links: list[Link]
    similar: list[SimilarRow] = Field(
        default_factory=list,
        description="Up to five earlier incidents with the closest signatures, closest first (ties: the more recent "
        "first). Empty in reports rendered before it was added.",
    )
    enrichment: Enrichment | None


def seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def build(report: IncidentReport) -> IncidentContent:
    context = report.context
    return IncidentContent(
        summary=summary(report),
        timeline=timeline(report.timeline, context.timeline if context else []),
        alerts=[alert_row(a) for a in report.alerts],
        metrics=[MetricRow(**s.model_dump()) for s in context.metrics] if context else [],
        logs=Logs(
            lines_total=context.log_lines_total if context else 0,
            excerpt=[LogRow(**line.model_dump()) for line in context.logs] if context else [],
            error_bursts=[BurstRow(**burst.model_dump()) for burst in context.error_bursts] if context else [],
        ),
        security_events=[SecurityRow(**event.model_dump()) for event in context.security_events] if context else [],
        recommendations=recommendations(report.alerts),
        links=links(report.alerts, report.alertmanager_url),
        similar=[similar_row(item) for item in report.similar],
        enrichment=enrichment(context, report.context_version),
    )


def similar_row(item: SimilarIncident) -> SimilarRow:
    comment = item.last_comment
    return SimilarRow(
        key=item.key,
        title=item.title,
        state=item.state,
        severity=item.severity,
        opened_at=item.opened_at,
        duration_seconds=seconds(item.duration),
        acknowledged_at=item.acknowledged_at,
        acknowledged_by=item.acknowledged_by,
        resolved_at=item.resolved_at,
        resolved_by=item.resolved_by,
        last_comment=comment.text if comment else None,
        last_comment_by=comment.actor if comment else None,
        last_comment_at=comment.at if comment else None,
        similarity=round(item.similarity, 4),
        path=f"/incidents/{quote(item.key, safe='')}",
    )


def summary(report: IncidentReport) -> Summary:
    return Summary(
        key=report.key,
        title=report.title,
        state=report.state,
        severity=report.severity,
        rule=report.rule,
        hosts=list(report.hosts),
        group_labels=dict(sorted(report.group_labels.items())),
        flapping=report.flapping,
        maintenance=report.maintenance,
        revision=report.revision,
        alert_count=report.alert_count,
        firing_count=report.firing_count,
        opened_at=report.opened_at,
        first_alert_at=report.first_alert_at,
        last_alert_at=report.last_alert_at,
        acknowledged_at=report.acknowledged_at,
        acknowledged_by=report.acknowledged_by,
        resolved_at=report.resolved_at,
        resolved_by=report.resolved_by,
        ended_at=report.resolved_at,
        as_of=report.as_of,
        duration_seconds=report.duration.total_seconds(),
        time_to_acknowledge_seconds=seconds(report.time_to_acknowledge),
        time_to_resolve_seconds=seconds(report.time_to_resolve),
    )


def alert_row(alert: ReportAlert) -> AlertRow:
    # Built from an already validated ReportAlert: skipping validation matters with 10,000 alerts.
    return AlertRow.model_construct(
        fingerprint=alert.fingerprint,
        alertname=alert.alertname,
        severity=alert.severity,
        host=alert.host,
        status=alert.status,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        duration_seconds=seconds(alert.ends_at - alert.starts_at) if alert.ends_at else None,
        summary=alert.annotations.get("summary", ""),
        labels=dict(sorted(alert.labels.items())),
        annotations=dict(sorted(alert.annotations.items())),
        generator_url=alert.generator_url,
        source=alert.source,
        adjusted=describe_adjustments(alert.adjustments),
        suppression=suppression_text(alert),
    )


def suppression_text(alert: ReportAlert) -> str | None:
    if alert.suppressed is None:
        return None
    if alert.suppressed == "inhibited":
        return f"inhibited by {', '.join(alert.inhibited_by) or '?'}"
    silences = [
        f"{s.get('id')} by {s.get('created_by') or '?'}" + (f" ({s['comment']})" if s.get("comment") else "")
        for s in alert.silences
    ] or alert.silenced_by
    until = f" until {alert.suppressed_until.isoformat().replace('+00:00', 'Z')}" if alert.suppressed_until else ""
    return f"silenced{until}: {'; '.join(silences)}"


# Detail keys worth a reader's attention, in reading order; other keys follow sorted by name.
DETAIL_ORDER = ("comment", "alertname", "host", "from", "to", "severity", "title", "reason")


def timeline_text(entry: TimelineEntry) -> str:
    head = describe(entry.kind)
    detail = entry.detail
    if entry.kind == "comment" and "comment" in detail:
        return f"{head}: {detail['comment']}"
    keys = [k for k in DETAIL_ORDER if k in detail] + sorted(k for k in detail if k not in DETAIL_ORDER)
    parts = [f"{k}={detail[k]}" for k in keys if k != "fingerprint" and detail[k] not in (None, "")]
    return f"{head}: {', '.join(parts)}" if parts else head


def context_text(event: ContextEvent) -> str:
    parts = [f"{k}={v}" for k, v in sorted(event.detail.items()) if v not in (None, "")]
    return f"{event.title} ({', '.join(parts)})" if parts else event.title


def timeline(entries: Iterable[TimelineEntry], context_events: Iterable[ContextEvent]) -> list[TimelineRow]:
    """Incident changes and the enricher's linked events in one list; ties keep incident changes first."""
    rows = [
        TimelineRow.model_construct(at=e.at, source="incident", kind=e.kind, actor=e.actor, text=timeline_text(e))
        for e in entries
    ]
    rows += [
        TimelineRow(at=e.at, source="enrichment", kind=e.kind, actor=None, text=context_text(e)) for e in context_events
    ]
    # sorted() is stable: equal times keep the database order, and incident rows come before enrichment rows.
    return sorted(rows, key=lambda r: (r.at, r.source != "incident"))


def action_lines(text: str) -> list[str]:
    lines = (line.strip().removeprefix("- ").removeprefix("* ").strip() for line in text.splitlines())
    return [line for line in lines if line]


def runbook_of(alert: ReportAlert) -> str:
    return next((alert.annotations[k] for k in RUNBOOK_ANNOTATIONS if alert.annotations.get(k)), "")


def most_frequent(counts: Counter[str], limit: int = MAX_VARIANTS, keep: Callable[[str], bool] = bool) -> list[str]:
    """Distinct values that `keep` accepts, most frequent first, ties in text order (deterministic for any input
    order); `keep` runs only until `limit` values are found."""
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    return list(islice((value for value in ranked if value and keep(value)), limit))


def by_alertname(alerts: Iterable[ReportAlert]) -> dict[str, list[ReportAlert]]:
    groups: dict[str, list[ReportAlert]] = {}
    for alert in alerts:
        groups.setdefault(alert.alertname, []).append(alert)
    return dict(sorted(groups.items()))


def recommendations(alerts: Iterable[ReportAlert]) -> list[Recommendation]:
    found = []
    for alertname, group in by_alertname(alerts).items():
        summaries = Counter(a.annotations.get("summary", "") for a in group)
        descriptions = Counter(a.annotations.get("description", "") for a in group)
        actions = Counter(line for a in group for line in dict.fromkeys(action_lines(a.annotations.get("actions", ""))))
        runbooks = Counter(runbook_of(a) for a in group)
        advice = Recommendation(
            alertname=alertname,
            alerts=len(group),
            summaries=most_frequent(summaries),
            descriptions=most_frequent(descriptions),
            actions=most_frequent(actions, MAX_ACTIONS),
            runbook_urls=most_frequent(runbooks),
        )
        if advice.summaries or advice.descriptions or advice.actions or advice.runbook_urls:
            found.append(advice)
    return found


SILENCE_LABELS = ("alertname", "instance", "host", "job")


def silence_url(alertmanager_url: str, group: list[ReportAlert]) -> str:
    """Alertmanager's 'new silence' form, prefilled with the identifying labels all alerts of the group share."""
    matchers = []
    for name in SILENCE_LABELS:
        values = {a.labels.get(name) or (a.alertname if name == "alertname" else "") for a in group}
        if len(values) == 1 and (value := values.pop()):
            matchers.append(str(new_matcher(MatchType.equal, name, value)))
    flt = "{" + ",".join(matchers) + "}"
    return f"{alertmanager_url.rstrip('/')}/#/silences/new?filter={quote(flt, safe='')}"


def links(alerts: Iterable[ReportAlert], alertmanager_url: str) -> list[Link]:
    """Per alert name: its most common source (generator) URLs and runbooks, and one silence for all its alerts."""
    found: list[Link] = []
    for alertname, group in by_alertname(alerts).items():
        sources = Counter(a.generator_url for a in group)
        runbooks = Counter(runbook_of(a) for a in group)
        found += [Link(kind="source", alertname=alertname, url=u) for u in most_frequent(sources, keep=is_web_url)]
        found += [Link(kind="runbook", alertname=alertname, url=u) for u in most_frequent(runbooks, keep=is_web_url)]
        if alertmanager_url and is_web_url(alertmanager_url):
            found.append(Link(kind="silence", alertname=alertname, url=silence_url(alertmanager_url, group)))
    order = {"source": 0, "runbook": 1, "silence": 2}
    return sorted(found, key=lambda link: (order[link.kind], link.alertname))


def enrichment(context: IncidentContext | None, version: int | None) -> Enrichment | None:
    if context is None:
        return None
    return Enrichment(
        version=version,
        complete=context.complete,
        missing=list(context.missing),
        window_start=context.window_start,
        window_end=context.window_end,
        generated_at=context.generated_at,
        upstreams=[u.model_dump() for u in context.upstreams],
    )
