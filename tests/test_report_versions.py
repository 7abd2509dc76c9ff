"""Pure rules of the reporter: when a rendering becomes a new stored version, and how open incidents are measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from services.reporter import incident_json, incident_markdown
from services.reporter.consumer import next_step
from services.reporter.incident_report import IncidentReport
from services.reporter.versions import Decision, decide

HASHES = {"md": "a", "xlsx": "b", "json": "c"}


def test_first_rendering_is_version_one() -> None:
    assert decide(None, {}, HASHES) == Decision(1, new=True)


def test_same_bytes_keep_the_newest_version() -> None:
    assert decide(3, HASHES, HASHES) == Decision(3, new=False)


def test_any_changed_format_makes_the_next_version() -> None:
    assert decide(3, HASHES, {**HASHES, "xlsx": "changed"}) == Decision(4, new=True)
    # A format missing from the stored version (an older reporter stored fewer) also counts as a change.
    assert decide(3, {"md": "a"}, HASHES) == Decision(4, new=True)


def open_report() -> IncidentReport:
    t0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    return IncidentReport(
        key="INC-000007",
        title="Still burning",
        state="open",
        severity="warning",
        rule="default",
        revision=2,
        alert_count=0,
        firing_count=0,
        opened_at=t0,
        first_alert_at=t0,
        last_alert_at=t0,
        # A time in another zone: the report shows it in UTC.
        as_of=(t0 + timedelta(minutes=95)).astimezone(datetime.now().astimezone().tzinfo),
    )


def test_open_incident_is_measured_to_the_data_not_the_clock() -> None:
    report = open_report()
    text = incident_markdown.render(report)
    assert "| Duration | 1h 35m 00s (still open) |" in text
    assert "| Time to acknowledge | not acknowledged |" in text
    assert "| Data as of | 2026-11-01 04:35:00 |" in text
    assert incident_markdown.render(open_report()) == text
    summary = incident_json.render(report)["summary"]
    assert summary["duration_seconds"] == 95 * 60 and summary["ended_at"] is None
    assert summary["as_of"] == "2026-11-01T04:35:00Z"
    assert "Not enriched yet" in text


NOW = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)
# What `report_freshness` gives for an open incident whose announced reports show revision 4 and enrichment 2.
SHOWN = {
    "revision": 4,
    "state": "open",
    "enrichment_version": 2,
    "reported_revision": 4,
    "reported_enrichment_version": 2,
    "published": True,
    "rendered_at": NOW,
}
NEVER_RENDERED = {
    **SHOWN,
    "reported_revision": None,
    "reported_enrichment_version": None,
    "published": None,
    "rendered_at": None,
}


def test_storm_of_enrichments_renders_at_most_once_per_interval() -> None:
    now, interval, shown = NOW, INTERVAL, SHOWN
    newer = {**shown, "enrichment_version": 3}
    assert next_step(shown, event_type="incident.enriched", now=now, interval=interval) == "skip"
    assert (
        next_step(newer, event_type="incident.enriched", now=now + timedelta(seconds=2), interval=interval) == "defer"
    )
    assert (
        next_step(newer, event_type="incident.enriched", now=now + timedelta(seconds=11), interval=interval) == "render"
    )
    assert next_step(newer, event_type="incident.resolved", now=now, interval=interval) == "render"
    resolved = {**newer, "state": "resolved"}
    assert next_step(resolved, event_type="incident.enriched", now=now, interval=interval) == "render"
    # Rendered and stored but never announced (a crash before report.ready): rendered again once the interval is
    # over, so the announcement does go out.
    unannounced = {**shown, "published": False}
    assert next_step(unannounced, event_type="incident.enriched", now=now, interval=interval) == "defer"
    later = now + timedelta(seconds=10)
    assert next_step(unannounced, event_type="incident.enriched", now=later, interval=interval) == "render"
    assert next_step(NEVER_RENDERED, event_type="incident.enriched", now=now, interval=interval) == "render"


def test_an_enrichment_older_than_the_stored_one_is_superseded_by_its_own_event() -> None:
    never = {**NEVER_RENDERED, "enrichment_version": 3}
    step = partial(next_step, event_type="incident.enriched", now=NOW, interval=INTERVAL)
    assert step(never, enrichment_version=2) == "superseded"
    assert step(never, enrichment_version=3) == "render"
    assert step(never) == "render"  # an event that names no version (an older enricher) is rendered
    # Not for the resolve: that one renders at once, whatever the enrichment.
    assert (
        next_step(never, event_type="incident.resolved", now=NOW, interval=INTERVAL, enrichment_version=1) == "render"
    )
    # A report already showing the newest state is skipped, whichever event asks.
    shown = {**SHOWN, "enrichment_version": 3, "reported_enrichment_version": 3}
    assert step(shown, enrichment_version=2) == "skip"
