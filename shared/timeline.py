"""The vocabulary of an incident's timeline (`incident_timeline.kind`): written by the correlator, shown by
the reporter and the web in the same words."""

from __future__ import annotations

TIMELINE_TEXT = {
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


def describe(kind: str) -> str:
    """The words for a timeline kind; an unknown kind (a newer correlator's) reads as itself."""
    return TIMELINE_TEXT.get(kind, kind.replace("_", " ").capitalize())
