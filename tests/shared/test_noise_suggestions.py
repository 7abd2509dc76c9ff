"""The noisiest alerts' suggestions (shared.insights.noise.suggest), a pure function of one alert's figures: each rule
at its thresholds, their order, and a property: whatever the figures, the evidence states figures that hold."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.insights.noise import (
    CLUSTER_WINDOW,
    MIN_INCIDENTS,
    SHORT_FIRING,
    Funnel,
    Quality,
    duration_text,
    funnel_of,
    noisiest_of,
    params,
    quality_of,
    suggest,
)

# Acknowledged, long-firing, one incident per cause: nothing to suggest.
CALM = Quality(
    name="HostDown",
    rule="default",
    notifications=40,
    occurrences=20,
    incidents=10,
    held_back=0,
    unacknowledged=0,
    flapping=0,
    single_alert=0,
    clustered=0,
    hosts=3,
    not_resolved=0,
    median_firing_s=3600.0,
)


def test_calm_alert_gets_no_suggestion_and_says_why() -> None:
    s = suggest(CALM)
    assert s.action == "none"
    assert s.evidence == "0 of 10 incidents resolved without acknowledgement; 0 of 10 flapped"


def test_short_and_unacknowledged_raises_for() -> None:
    q = replace(CALM, unacknowledged=8, median_firing_s=95.0)
    s = suggest(q)
    assert s.action == "raise_for"
    assert s.evidence == "median time firing 1m 35s; 8 of 10 incidents resolved without acknowledgement"
    assert "more than 1m 35s" in s.text


def test_raise_for_needs_both_short_firing_and_most_unacknowledged() -> None:
    short = SHORT_FIRING.total_seconds()
    assert suggest(replace(CALM, unacknowledged=8, median_firing_s=short)).action == "none"  # not below the limit
    assert suggest(replace(CALM, unacknowledged=8, median_firing_s=short - 1)).action == "raise_for"
    assert suggest(replace(CALM, unacknowledged=7, median_firing_s=10.0)).action == "none"  # 70 %: not most
    assert suggest(replace(CALM, unacknowledged=8, median_firing_s=None)).action == "none"  # no occurrence


def test_flapping_raises_for() -> None:
    assert suggest(replace(CALM, flapping=4)).action == "none"
    s = suggest(replace(CALM, flapping=5))
    assert (s.action, s.evidence) == ("raise_for", "5 of 10 incidents flapped")
    assert "keep_firing_for" in s.text


def test_one_cause_on_many_hosts_is_grouped_differently() -> None:
    q = replace(CALM, single_alert=9, clustered=6, hosts=9)
    s = suggest(q)
    assert s.action == "group_by" and "rule `default`" in s.text
    window = duration_text(CLUSTER_WINDOW.total_seconds())
    assert s.evidence == f"9 of 10 incidents held this one alert; 6 of 10 opened within {window} of another; on 9 hosts"
    # Not together in time, or on one host only, or not single-alert incidents: no grouping would merge them.
    assert suggest(replace(q, clustered=4)).action == "none"
    assert suggest(replace(q, hosts=1)).action == "none"
    assert suggest(replace(q, single_alert=7)).action == "none"


def test_small_unanswered_incidents_make_a_min_alerts_rule() -> None:
    q = replace(CALM, single_alert=10, unacknowledged=9)
    s = suggest(q)
    assert s.action == "min_alerts" and "min_alerts" in s.text
    assert s.evidence == "10 of 10 incidents held this one alert; 9 of 10 resolved without acknowledgement"
    assert suggest(replace(q, unacknowledged=7)).action == "none"
    assert suggest(replace(q, single_alert=7)).action == "none"


def test_order_of_the_rules() -> None:
    # Short, unanswered, flapping, single and clustered on many hosts all at once: raising for: comes first.
    everything = replace(CALM, unacknowledged=10, median_firing_s=30.0, flapping=10, single_alert=10, clustered=10)
    assert suggest(everything).action == "raise_for"
    assert suggest(replace(everything, median_firing_s=3600.0)).evidence == "10 of 10 incidents flapped"
    grouped = replace(everything, median_firing_s=3600.0, flapping=0)
    assert suggest(grouped).action == "group_by"  # before min_alerts: grouping explains the small incidents
    assert suggest(replace(grouped, clustered=0)).action == "min_alerts"


def test_too_few_incidents_to_judge() -> None:
    few = replace(CALM, incidents=MIN_INCIDENTS - 1, unacknowledged=MIN_INCIDENTS - 1, median_firing_s=1.0)
    s = suggest(few)
    assert s.action == "none" and s.evidence == f"{MIN_INCIDENTS - 1} incidents (fewer than {MIN_INCIDENTS})"
    assert suggest(replace(few, incidents=MIN_INCIDENTS, unacknowledged=MIN_INCIDENTS)).action == "raise_for"


@st.composite
def qualities(draw: st.DrawFn) -> Quality:
    incidents = draw(st.integers(0, 200))
    part = st.integers(0, incidents)
    return replace(
        CALM,
        incidents=incidents,
        unacknowledged=draw(part),
        flapping=draw(part),
        single_alert=draw(part),
        clustered=draw(part),
        hosts=draw(st.integers(0, 300)),
        median_firing_s=draw(st.none() | st.floats(0, 10 * 86_400, allow_nan=False)),
    )


@given(qualities())
def test_evidence_states_figures_that_hold(q: Quality) -> None:
    s = suggest(q)
    for part, whole in re.findall(r"(\d+) of (\d+)", s.evidence):
        assert int(whole) == q.incidents and int(part) <= q.incidents
    if s.action != "none":
        assert q.incidents >= MIN_INCIDENTS
    if s.action == "raise_for" and "median" in s.evidence:
        assert q.median_firing_s is not None and q.median_firing_s < SHORT_FIRING.total_seconds()
        assert q.unacknowledged / q.incidents >= 0.75
    if s.action == "group_by":
        assert q.hosts > 1 and q.clustered * 2 >= q.incidents and q.single_alert / q.incidents >= 0.75
    if s.action == "min_alerts":
        assert q.single_alert / q.incidents >= 0.75 and q.unacknowledged / q.incidents >= 0.75


def test_noisiest_keeps_the_order_and_the_top() -> None:
    alerts = [replace(CALM, name=f"A{n}", notifications=100 - n) for n in range(12)]
    top = noisiest_of(alerts)
    assert [n.alert.name for n in top] == [f"A{n}" for n in range(10)]
    assert noisiest_of(alerts, 3)[2].suggestion == suggest(alerts[2])


def test_rows_become_dataclasses() -> None:
    row = {
        "alertname": "DiskFull",
        "rule": "disks",
        "notifications": 7,
        "occurrences": 3,
        "incidents": 2,
        "held_back": 1,
        "unacknowledged": 1,
        "flapping": 0,
        "single_alert": 2,
        "clustered": 0,
        "hosts": 2,
        "not_resolved": 1,
        "median_firing_s": 61.5,
    }
    q = quality_of(row)
    assert (q.name, q.rule, q.notifications, q.unacknowledged_share, q.median_firing_s) == (
        "DiskFull",
        "disks",
        7,
        0.5,
        61.5,
    )
    rule = quality_of({k: v for k, v in row.items() if k != "alertname"})
    assert (rule.name, rule.rule) == ("disks", None)
    assert funnel_of(None) == Funnel()
    f = funnel_of({name: 3 for name in vars(Funnel())})
    assert f.repeats == 0 and f.notifications_per_incident == 1.0


def test_params_need_an_ordered_zoned_period() -> None:
    with pytest.raises(ValueError, match="time zone"):
        params(datetime(2026, 11, 1), datetime(2026, 11, 2))
    with pytest.raises(ValueError, match="after"):
        params(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert params(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))["top"] is None
