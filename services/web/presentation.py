"""Rows from PostgreSQL shaped for the pages and the JSON API. Pure functions over plain data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup
from pydantic import ValidationError

from services.web.charts import render_chart
from shared.incident_context import IncidentContext

INCIDENT_FIELDS = (
    "key",
    "title",
    "state",
    "severity",
    "hosts",
    "rule",
    "alert_count",
    "firing_count",
    "flapping",
    "revision",
    "opened_at",
    "first_alert_at",
    "last_alert_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "updated_at",
)
TIMELINE_WORDS = {
    "incident_opened": "Incident opened",
    "alert_added": "Alert added",
    "alert_resolved": "Alert resolved",
    "alert_stale": "Alert went stale",
    "alert_refired": "Alert fired again",
    "severity_changed": "Severity changed",
    "flapping_started": "Flapping started",
    "flapping_stopped": "Flapping stopped",
    "incident_acknowledged": "Acknowledged",
    "incident_resolved": "Resolved",
    "incident_reopened": "Reopened",
    "comment": "Comment",
}


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_tag(at: datetime | None) -> Markup:
    """UTC in the markup; static/app.js rewrites the text into the viewer's zone, UTC stays on hover."""
    if at is None:
        return Markup('<span class="muted">—</span>')
    utc = at.astimezone(UTC)
    return Markup('<time datetime="{}" title="{} UTC">{} UTC</time>').format(
        iso(utc), utc.strftime("%Y-%m-%d %H:%M:%S"), utc.strftime("%Y-%m-%d %H:%M")
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


def web_link(url: str | None) -> str | None:
    """Only http(s) links leave an alert for the page: `javascript:` or `data:` URLs would run code."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def incident_durations(row: dict[str, Any], now: datetime) -> dict[str, str]:
    end = row.get("resolved_at") or now
    acked = row.get("acknowledged_at")
    return {
        "open_for": duration((end - row["opened_at"]).total_seconds()),
        "to_acknowledge": duration((acked - row["opened_at"]).total_seconds()) if acked else "—",
        "to_resolve": duration((row["resolved_at"] - row["opened_at"]).total_seconds())
        if row.get("resolved_at")
        else "—",
    }


def timeline_summary(kind: str, detail: dict[str, Any]) -> str:
    """A one-line description of a timeline entry; the values are shown as text (escaped by the template)."""
    if kind == "comment":
        return str(detail.get("comment", ""))
    parts = [f"{name}={value}" for name, value in detail.items() if isinstance(value, str | int | float) and value]
    return ", ".join(parts)


def incident_summary_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in INCIDENT_FIELDS}
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = iso(value)
    return out


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "fingerprint": row["fingerprint"],
        "alertname": row["alertname"],
        "status": row["status"],
        "severity": row["severity"],
        "host": row["host"],
        "starts_at": iso(row["starts_at"]),
        "ends_at": iso(row["ends_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "last_seen_at": iso(row["last_seen_at"]),
        "labels": row["labels"],
        "annotations": row["annotations"],
        "generator_url": row["generator_url"],
        "source": row["source"],
    }


def timeline_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"at": iso(row["at"]), "kind": row["kind"], "actor": row["actor"], "detail": row["detail"]}


def parse_context(enrichment: dict[str, Any] | None) -> IncidentContext | None:
    if enrichment is None:
        return None
    try:
        return IncidentContext.model_validate(enrichment["context"])
    except ValidationError:
        return None


def alert_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "alertname": row["alertname"],
        "status": row["status"],
        "severity": row["severity"],
        "host": row["host"] or "",
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"] or row["resolved_at"],
        # One text per alert keeps a page of 10,000 alerts small and quick to render.
        "labels": ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items()) if k != "alertname"),
        "annotations": sorted(row["annotations"].items()),
        "link": web_link(row["generator_url"]),
        "runbook": web_link(row["annotations"].get("runbook_url")),
    }


def charts(context: IncidentContext | None, alert_starts: Sequence[datetime]) -> list[Markup]:
    if context is None:
        return []
    return [
        render_chart(
            series.name,
            series.points,
            alert_starts,
            unit=series.unit,
            start=context.window_start,
            end=context.window_end,
        )
        for series in context.metrics
    ]


def incident_page(
    row: dict[str, Any],
    alerts: list[dict[str, Any]],
    timeline: list[dict[str, Any]],
    enrichment: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    context = parse_context(enrichment)
    starts = sorted({a["starts_at"] for a in alerts})
    return {
        "incident": row,
        "durations": incident_durations(row, now),
        "alerts": [alert_view(a) for a in alerts],
        "timeline": [
            {
                "at": t["at"],
                "kind": t["kind"],
                "what": TIMELINE_WORDS.get(t["kind"], t["kind"]),
                "actor": t["actor"] or "",
                "summary": timeline_summary(t["kind"], t["detail"] or {}),
            }
            for t in timeline
        ],
        "context": context,
        "enrichment_broken": enrichment is not None and context is None,
        "charts": charts(context, starts),
        "links": sorted(
            {(a["alertname"], link) for a in alerts[:1000] if (link := web_link(a["generator_url"]))},
        )[:20],
    }
