"""Pure rules of the reporter: when a rendering becomes a new stored version, and how open incidents are measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from services.reporter.consumer import next_step
from services.reporter.versions import Decision, Source, decide, is_older
from shared.reports import incident_json, incident_markdown
from shared.reports.incident_report import IncidentReport

HASHES = {"md": "a", "xlsx": "b", "json": "c"}
REV5 = Source(incident_revision=5, enrichment_version=2)
REV6 = Source(incident_revision=6, enrichment_version=2)


def test_first_rendering_is_version_one() -> None:
    assert decide(None, {}, HASHES, latest_source=None, source=REV5) == Decision(1, "new", records_source=True)


def test_same_source_and_bytes_keep_the_newest_version() -> None:
    assert decide(3, HASHES, HASHES, latest_source=REV5, source=REV5) == Decision(3, "unchanged", records_source=False)


def test_any_changed_format_makes_the_next_version() -> None:
    changed = {**HASHES, "xlsx": "changed"}
    assert decide(3, HASHES, changed, latest_source=REV5, source=REV6) == Decision(4, "new", records_source=True)
    # The same source rendering other bytes (a new reporter release) is not older: it is stored too.
    assert decide(3, HASHES, changed, latest_source=REV5, source=REV5) == Decision(4, "new", records_source=True)
    # A format missing from the stored version (an older reporter stored fewer) also counts as a change.
    assert decide(3, {"md": "a"}, HASHES, latest_source=REV5, source=REV5).version == 4


def test_an_xlsx_stored_with_the_newest_version_does_not_make_a_new_one() -> None:
    # Stored before the reporter stopped storing XLSX (the web renders it from the JSON): the same Markdown and JSON
    # are the same report.
    stored_now = {"md": "a", "json": "c"}
    assert decide(3, HASHES, stored_now, latest_source=REV5, source=REV6) == Decision(
        3, "unchanged", records_source=True
    )
    assert decide(3, HASHES, {**stored_now, "json": "d"}, latest_source=REV5, source=REV6).outcome == "new"


def test_a_slow_rendering_of_an_older_state_never_replaces_a_newer_version() -> None:
    """Replica A renders revision 5, replica B renders revision 6 and stores version 3, then A is done: A's reports
    are not stored, whatever their bytes, and version 3 stays the latest."""
    superseded = Decision(3, "superseded", records_source=False)
    assert decide(3, HASHES, {**HASHES, "md": "rev 5"}, latest_source=REV6, source=REV5) == superseded
    assert decide(3, HASHES, HASHES, latest_source=REV6, source=REV5) == superseded
    older_enrichment = Source(incident_revision=6, enrichment_version=1)
    assert decide(3, HASHES, {**HASHES, "md": "e1"}, latest_source=REV6, source=older_enrichment) == superseded


def test_a_newer_source_with_the_same_bytes_keeps_the_version_as_showing_that_source() -> None:
    # Enrichment 3 recomputed the same context: version 3 now counts as showing it, so a rendering of enrichment 2
    # that finishes late is older than what is stored, whatever its bytes.
    rev6_e3 = Source(incident_revision=6, enrichment_version=3)
    assert decide(3, HASHES, HASHES, latest_source=REV6, source=rev6_e3) == Decision(
        3, "unchanged", records_source=True
    )
    assert decide(3, HASHES, {"md": "x"}, latest_source=rev6_e3, source=REV6).outcome == "superseded"


def test_older_means_an_older_revision_then_an_older_enrichment() -> None:
    assert is_older(REV5, REV6) and not is_older(REV6, REV5)
    assert not is_older(REV5, REV5)
    # The revision decides first: a later snapshot never has a smaller enrichment version, so this pair only
    # arises if the enrichment row was replaced; the newer incident state wins.
    assert is_older(Source(5, 9), Source(6, 1))
    # Not enriched yet is older than any enrichment of the same revision, not of an older one.
    assert is_older(Source(6, None), Source(6, 1))
    assert not is_older(Source(6, None), Source(5, 1))
    assert not is_older(Source(6, None), Source(6, None))
    # Versions stored before sources were recorded are older than every rendering, and nothing is older than them.
    assert is_older(None, Source(1, None))
    assert not is_older(Source(1, None), None)
    assert not is_older(None, None)


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
