"""The vocabulary of an incident's timeline (`incident_timeline.kind`): written by the correlator, shown by
the reporter and the web in the same words."""

from __future__ import annotations

from shared.contracts import TimelineKind

TIMELINE_TEXT: dict[str, str] = {
    TimelineKind.incident_opened: "Incident opened",
    TimelineKind.alert_added: "Alert added",
    TimelineKind.alert_resolved: "Alert resolved",
    TimelineKind.alert_stale: "Alert went stale",
    TimelineKind.alert_refired: "Alert fired again",
    TimelineKind.alert_silenced: "Alert silenced",
    TimelineKind.alert_unsilenced: "Alert no longer silenced",
    TimelineKind.severity_changed: "Severity changed",
    TimelineKind.flapping_started: "Flapping started",
    TimelineKind.flapping_stopped: "Flapping stopped",
    TimelineKind.incident_acknowledged: "Acknowledged",
    TimelineKind.incident_resolved: "Resolved",
    TimelineKind.incident_reopened: "Reopened",
    TimelineKind.comment: "Comment",
}


def describe(kind: str) -> str:
    """The words for a timeline kind; an unknown kind (a newer correlator's) reads as itself."""
    return TIMELINE_TEXT.get(kind, kind.replace("_", " ").capitalize())
