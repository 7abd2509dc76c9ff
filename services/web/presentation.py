"""Rows from PostgreSQL shaped for the pages and the JSON API. Pure functions over plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape
from pydantic import ValidationError

from services.web.charts import ChartEvent, render_chart
from shared.alert_limits import describe_adjustments
from shared.contracts import TimelineKind
from shared.incident_context import IncidentContext, SeriesSummary
from shared.readmodel.models import Alert, Enrichment, Incident, SimilarIncident, TimelineEntry
from shared.reports.incident_content import context_text
from shared.timeline import describe
from shared.urls import web_link

# What the API says of an incident in a list and atop its detail: the read model's fields but its database id (the
# detail adds `group_labels`).
# Headings of the enricher's linked events on the page (the incident's own come from shared/timeline.py).
LINKED_WHAT = {
    "metric_deviation": "Metric left its baseline",
    "metric_peak": "Metric peak",
    "log_burst": "Error log burst",
    "security": "Security event",
    "alert_start": "Alert started",
    "alert_end": "Alert ended",
}
# Timeline kinds that mark a silence on the charts.
SILENCE_KINDS = frozenset({TimelineKind.alert_silenced})
SUMMARY_FIELDS = tuple(name for name in Incident.model_fields if name not in ("id", "group_labels"))


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_tag(at: datetime | None) -> Markup:
    """UTC in the markup; static/app.js rewrites the text into the viewer's zone, UTC stays on hover."""
    if at is None:
        return Markup('<span class="muted">—</span>')
    # Only digits of an isoformat reach the markup; slicing one keeps 10,000 rows quick.
    utc = at.astimezone(UTC).isoformat()
    day, clock = utc[:10], utc[11:19]
    return Markup(  # noqa: S704 (no text from outside)
        f'<time datetime="{day}T{clock}Z" title="{day} {clock} UTC">{day} {clock[:5]} UTC</time>'
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def incident_durations(incident: Incident, now: datetime) -> dict[str, str]:
    end = incident.resolved_at or now
    acked = incident.acknowledged_at
    resolved = incident.resolved_at
    return {
        "open_for": duration((end - incident.opened_at).total_seconds()),
        "to_acknowledge": duration((acked - incident.opened_at).total_seconds()) if acked else "—",
        "to_resolve": duration((resolved - incident.opened_at).total_seconds()) if resolved else "—",
    }


def timeline_summary(kind: str, detail: dict[str, Any]) -> str:
    """A one-line description of a timeline entry; the values are shown as text (escaped by the template)."""
    if kind == "comment":
        return str(detail.get("comment", ""))
    parts = [f"{name}={value}" for name, value in detail.items() if isinstance(value, str | int | float) and value]
    return ", ".join(parts)


def incident_summary_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the list (or a read model incident's `model_dump()`) as the API shows it."""
    out = {name: row.get(name) for name in SUMMARY_FIELDS}
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = iso(value)
    return out


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "alertname": alert.alertname,
        "status": alert.status,
        "severity": alert.severity,
        "host": alert.host,
        "starts_at": iso(alert.starts_at),
        "ends_at": iso(alert.ends_at),
        "resolved_at": iso(alert.resolved_at),
        "last_seen_at": iso(alert.last_seen_at),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "source": alert.source,
        "sender": alert.sender,
        # What Vigil changed to store the alert within its limits, and what was sent (null: stored as sent).
        "adjustments": alert.adjustments,
        # What Alertmanager holds it back by (null: nothing), as last polled.
        "suppression": suppression_json(alert),
    }


def suppression_json(alert: Alert) -> dict[str, Any] | None:
    if alert.suppressed is None:
        return None
    return {
        "state": alert.suppressed,
        "until": iso(alert.suppressed_until),
        "silences": [
            {
                "id": s.get("id"),
                "created_by": s.get("created_by"),
                "comment": s.get("comment"),
                "ends_at": s.get("ends_at"),
            }
            for s in alert.silences
        ],
        "silenced_by": alert.silenced_by,
        "inhibited_by": alert.inhibited_by,
    }


def incident_path(key: str) -> str:
    """The incident's page on the dashboard (a key is `INC-` and digits: nothing to escape)."""
    return f"/incidents/{key}"


def similar_json(item: SimilarIncident) -> dict[str, Any]:
    """An earlier incident like this one, as the API lists it: `similarity` from 0 to 1, `duration_seconds` null while
    it is unresolved, `last_comment` null when nobody commented."""
    comment = item.last_comment
    return {
        "key": item.key,
        "title": item.title,
        "state": item.state,
        "severity": item.severity,
        "rule": item.rule,
        "opened_at": iso(item.opened_at),
        "duration_seconds": item.duration.total_seconds() if item.duration is not None else None,
        "acknowledged_at": iso(item.acknowledged_at),
        "acknowledged_by": item.acknowledged_by,
        "resolved_at": iso(item.resolved_at),
        "resolved_by": item.resolved_by,
        "maintenance": item.maintenance,
        "similarity": round(item.similarity, 4),
        "last_comment": None
        if comment is None
        else {"at": iso(comment.at), "actor": comment.actor, "text": comment.text},
        "url": incident_path(item.key),
    }


def similar_view(items: Sequence[SimilarIncident]) -> list[dict[str, Any]]:
    """The page's rows of similar past incidents (the template escapes every value)."""
    return [
        {
            "item": item,
            "url": incident_path(item.key),
            "lasted": duration(item.duration.total_seconds()) if item.duration is not None else f"still {item.state}",
            "percent": round(item.similarity * 100),
        }
        for item in items
    ]


def timeline_json(entry: TimelineEntry) -> dict[str, Any]:
    return {"at": iso(entry.at), "kind": entry.kind, "actor": entry.actor, "detail": entry.detail}


def parse_context(enrichment: Enrichment | None) -> IncidentContext | None:
    """The enricher's context; None when there is none, or one this version cannot read (the page says so)."""
    if enrichment is None:
        return None
    try:
        return IncidentContext.model_validate(enrichment.context)
    except ValidationError:
        return None


def alert_row(alert: Alert) -> str:
    """One row of the alerts table, every value escaped (built here rather than in the template: a page of
    thousands of alerts renders several times faster)."""
    name = escape(alert.alertname)
    link = web_link(alert.generator_url)
    name_cell = f'<a href="{escape(link)}" rel="noopener noreferrer">{name}</a>' if link else name
    status = escape(alert.status)
    labels = escape(", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"))
    notes = "".join(f"<div><b>{escape(k)}</b>: {escape(v)}</div>" for k, v in sorted(alert.annotations.items()))
    runbook = web_link(alert.annotations.get("runbook_url"))
    if runbook:
        notes += f'<a href="{escape(runbook)}" rel="noopener noreferrer">runbook</a>'
    for line in describe_adjustments(alert.adjustments):
        notes += f'<div class="adjusted"><b>stored adjusted</b>: {escape(line)}</div>'
    held = suppression_json(alert)
    if held is not None:
        by = ", ".join(f"{s['created_by'] or '?'}: {s['comment'] or ''}" for s in held["silences"])
        until = f" until {held['until']}" if held["until"] else ""
        notes += f'<div class="suppressed"><b>{escape(held["state"])}{escape(until)}</b> {escape(by)}</div>'
    return (
        f'<tr><td>{name_cell}</td><td><span class="badge st-{status}">{status}</span></td>'
        f"<td>{escape(alert.host or '')}</td><td>{time_tag(alert.starts_at)}</td>"
        f"<td>{time_tag(alert.ends_at or alert.resolved_at)}</td>"
        f'<td class="labels">{labels}</td><td class="annotations">{notes}</td></tr>'
    )


def chart_events(
    context: IncidentContext, series: SeriesSummary, silences: Sequence[TimelineEntry]
) -> list[ChartEvent]:
    """What a chart marks besides alert starts: the series' own peak, the log bursts and the silences."""
    events = [ChartEvent(e.at, "log-burst", context_text(e)) for e in context.timeline if e.kind == "log_burst"]
    if series.peak_at is not None and series.peak is not None:
        unit = f" {series.unit}" if series.unit else ""
        events.append(ChartEvent(series.peak_at, "metric-peak", f"peak {series.peak:.4g}{unit}"))
    events += [ChartEvent(t.at, "silence", timeline_summary(t.kind, t.detail) or describe(t.kind)) for t in silences]
    return events


def charts(
    context: IncidentContext | None, alert_starts: Sequence[datetime], silences: Sequence[TimelineEntry] = ()
) -> list[dict[str, Any]]:
    if context is None:
        return []
    alert_starts = sorted(set(alert_starts))
    return [
        {
            "title": f"{series.name} ({series.unit})" if series.unit else series.name,
            "query": series.query,
            "svg": render_chart(
                series.name,
                series.points,
                alert_starts,
                unit=series.unit,
                start=context.window_start,
                end=context.window_end,
                events=chart_events(context, series, silences),
                band=series.bands,
            ),
        }
        for series in context.metrics
    ]


def timeline_view(
    timeline: list[TimelineEntry], counts: dict[str, int], context: IncidentContext | None = None
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The incident's changes and the enricher's linked events (metric deviations and peaks, log bursts, bans) in one
    list, merged as the reports merge them (ties: incident changes first); and (what, how many more) for the kinds
    whose long runs were cut."""
    shown: dict[str, int] = {}
    entries = []
    for t in timeline:
        shown[t.kind] = shown.get(t.kind, 0) + 1
        entries.append(
            {
                "at": t.at,
                "kind": t.kind,
                "source": "incident",
                "what": describe(t.kind),
                "actor": t.actor or "",
                "summary": timeline_summary(t.kind, t.detail),
            }
        )
    # Alert starts and ends are already the incident's own entries; the rest is what only the enricher knows.
    linked = [e for e in context.timeline if e.kind not in ("alert_start", "alert_end")] if context else []
    entries += [
        {
            "at": e.at,
            "kind": e.kind,
            "source": "enrichment",
            "what": LINKED_WHAT[e.kind],
            "actor": "",
            "summary": context_text(e),
        }
        for e in linked
    ]
    entries.sort(key=lambda entry: (entry["at"], entry["source"] != "incident"))
    hidden = [(describe(kind), n - shown.get(kind, 0)) for kind, n in sorted(counts.items()) if n > shown.get(kind, 0)]
    return entries, hidden


def incident_page(
    incident: Incident,
    alerts: list[Alert],
    alert_summary: list[dict[str, Any]],
    alert_starts: Sequence[datetime],
    timeline: list[TimelineEntry],
    timeline_counts: dict[str, int],
    enrichment: Enrichment | None,
    now: datetime,
    similar: Sequence[SimilarIncident] = (),
) -> dict[str, Any]:
    context = parse_context(enrichment)
    entries, hidden = timeline_view(timeline, timeline_counts, context)
    silences = [t for t in timeline if t.kind in SILENCE_KINDS]
    total_alerts = sum(s["n"] for s in alert_summary)
    return {
        "incident": incident,
        "durations": incident_durations(incident, now),
        "alerts_html": Markup("".join(alert_row(a) for a in alerts)),  # noqa: S704 (alert_row escapes every value)
        "alerts_shown": len(alerts),
        "alerts_total": total_alerts,
        "alert_summary": alert_summary,
        "timeline": entries,
        "timeline_hidden": hidden,
        "context": context,
        "enrichment_broken": enrichment is not None and context is None,
        "charts": charts(context, alert_starts, silences),
        "links": sorted({(a.alertname, link) for a in alerts if (link := web_link(a.generator_url))})[:20],
        "similar": similar_view(similar),
    }
