"""Pure tests of maintenance windows: ranges, weekly recurrences (across midnight and DST), matchers, definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.maintenance import MaintenanceError, MaintenanceWindow, in_maintenance, parse_window, window_definition

DB = {"alertname": "HostDown", "instance": "db-1:9100", "job": "node", "severity": "critical"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


RANGE = parse_window(
    {
        "name": "db-upgrade",
        "matchers": ['instance=~"db-.*"'],
        "start": "2026-11-02T09:00:00Z",
        "end": "2026-11-02T12:00Z",
    },
    "w",
)


def weekly(
    days: list[str], start: str, duration: str, timezone: str = "UTC", name: str = "weekly"
) -> MaintenanceWindow:
    return parse_window(
        {
            "name": name,
            "matchers": ['job="node"'],
            "weekly": {"days": days, "start": start, "duration": duration, "timezone": timezone},
        },
        "w",
    )


def test_a_range_holds_from_its_start_up_to_but_not_its_end() -> None:
    assert in_maintenance([RANGE], DB, utc("2026-11-02T08:59:59Z")) is None
    assert in_maintenance([RANGE], DB, utc("2026-11-02T09:00:00Z")) is RANGE
    assert in_maintenance([RANGE], DB, utc("2026-11-02T11:59:59+00:00")) is RANGE
    assert in_maintenance([RANGE], DB, utc("2026-11-02T12:00:00Z")) is None
    # An offset is a time like any other: 10:00+01:00 is 09:00Z.
    assert in_maintenance([RANGE], DB, utc("2026-11-02T10:00:00+01:00")) is RANGE


def test_matchers_mean_what_they_mean_in_alertmanager() -> None:
    at = utc("2026-11-02T10:00:00Z")
    assert in_maintenance([RANGE], {**DB, "instance": "web-1:9100"}, at) is None
    # Anchored regex: "xdb-1" does not match db-.*
    assert in_maintenance([RANGE], {**DB, "instance": "xdb-1"}, at) is None
    both = parse_window(
        {
            "name": "n",
            "matchers": ['{job="node", severity!="critical"}'],
            "start": "2026-11-02T09:00Z",
            "end": "2026-11-02T12:00Z",
        },
        "w",
    )
    assert in_maintenance([both], DB, at) is None  # every matcher must match
    assert in_maintenance([both], {**DB, "severity": "warning"}, at) is both
    absent = parse_window(
        {"name": "a", "matchers": ['team=""'], "start": "2026-11-02T09:00Z", "end": "2026-11-02T12:00Z"}, "w"
    )
    assert in_maintenance([absent], DB, at) is absent  # an absent label matches as the empty string


def test_the_first_matching_window_is_the_answer() -> None:
    other = parse_window({**window_definition(RANGE), "name": "second"}, "w")
    assert in_maintenance([RANGE, other], DB, utc("2026-11-02T10:00Z")) is RANGE
    assert in_maintenance([other, RANGE], DB, utc("2026-11-02T10:00Z")) is other
    assert in_maintenance([], DB, utc("2026-11-02T10:00Z")) is None


def test_weekly_across_midnight() -> None:
    w = weekly(["sat"], "23:00", "3h")  # Saturday 23:00 to Sunday 02:00
    sat = utc("2026-11-07T23:30:00Z")
    assert sat.weekday() == 5
    assert in_maintenance([w], DB, sat)
    assert in_maintenance([w], DB, utc("2026-11-08T01:59:59Z"))  # Sunday, still Saturday's window
    assert not in_maintenance([w], DB, utc("2026-11-08T02:00:00Z"))
    assert not in_maintenance([w], DB, utc("2026-11-07T22:59:59Z"))
    assert not in_maintenance([w], DB, utc("2026-11-08T23:30:00Z"))  # Sunday night is not a window day
    assert in_maintenance([w], DB, utc("2026-11-14T23:00:00Z"))  # the next week


def test_weekly_follows_the_local_clock_across_dst() -> None:
    w = weekly(["sat", "sun"], "02:00", "2h", "Europe/Berlin")
    # Winter (UTC+1): 02:00 Berlin is 01:00Z.
    assert in_maintenance([w], DB, utc("2026-11-07T01:00:00Z"))
    assert not in_maintenance([w], DB, utc("2026-11-07T00:59:59Z"))
    assert not in_maintenance([w], DB, utc("2026-11-07T03:00:00Z"))
    # Summer (UTC+2): 02:00 Berlin is 00:00Z.
    assert in_maintenance([w], DB, utc("2026-07-04T00:00:00Z"))
    assert not in_maintenance([w], DB, utc("2026-07-04T02:00:00Z"))
    # 2026-03-29 (Sunday) clocks spring forward at 02:00: the start takes the winter offset (01:00Z = 03:00 CEST)
    # and lasts two real hours.
    assert not in_maintenance([w], DB, utc("2026-03-29T00:59:59Z"))
    assert in_maintenance([w], DB, utc("2026-03-29T01:00:00Z"))
    assert in_maintenance([w], DB, utc("2026-03-29T02:59:59Z"))
    assert not in_maintenance([w], DB, utc("2026-03-29T03:00:00Z"))
    # 2026-10-25 (Sunday) clocks fall back at 03:00: 02:00 happens twice; the window starts at the first (00:00Z).
    assert in_maintenance([w], DB, utc("2026-10-25T00:00:00Z"))
    assert in_maintenance([w], DB, utc("2026-10-25T01:59:59Z"))
    assert not in_maintenance([w], DB, utc("2026-10-25T02:00:00Z"))


def test_weekly_days_are_local_days() -> None:
    # Monday 00:30 in Tokyo is Sunday 15:30Z: a Monday window in Tokyo holds then.
    w = weekly(["monday"], "00:00", "1h", "Asia/Tokyo")
    assert in_maintenance([w], DB, utc("2026-11-08T15:30:00Z"))
    assert not in_maintenance([w], DB, utc("2026-11-09T00:30:00Z"))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        in_maintenance([RANGE], DB, datetime(2026, 11, 2, 10))


def test_definitions_round_trip() -> None:
    for window in (RANGE, weekly(["sun", "sat"], "02:00", "1h30m", "Europe/Berlin")):
        definition = window_definition(window)
        assert parse_window(definition, "w") == window
    assert window_definition(weekly(["sun", "sat"], "2:05", "90m"))["weekly"] == {
        "days": ["sat", "sun"],
        "start": "02:05",
        "duration": "1h30m",
        "timezone": "UTC",
    }
    assert window_definition(RANGE)["start"] == "2026-11-02T09:00:00Z"
    # YAML's own timestamps (aware) are taken as they are.
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    parsed = parse_window({"name": "y", "matchers": ["a=b"], "start": at, "end": at + timedelta(hours=1)}, "w")
    assert parsed.starts_at == at


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x", "w: expected a mapping"),
        ({"name": "bad name", "matchers": ["a=b"]}, "w: name: expected"),
        ({"name": "n", "matchers": [], "start": "2026-11-02T09:00Z", "end": "2026-11-02T10:00Z"}, "'n': matchers"),
        ({"name": "n", "matchers": ["a=~(("], "start": "2026-11-02T09:00Z", "end": "2026-11-02T10:00Z"}, "matchers"),
        ({"name": "n", "matchers": ["a=b"]}, "either start and end"),
        (
            {"name": "n", "matchers": ["a=b"], "start": "2026-11-02T09:00Z", "end": "2026-11-02T10:00Z", "weekly": {}},
            "either",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "start": "2026-11-02T09:00", "end": "2026-11-02T10:00Z"},
            "start: .* no time zone",
        ),
        ({"name": "n", "matchers": ["a=b"], "start": "tomorrow", "end": "2026-11-02T10:00Z"}, "start: expected an ISO"),
        ({"name": "n", "matchers": ["a=b"], "start": "2026-11-02T09:00Z"}, "end: expected an ISO"),
        (
            {"name": "n", "matchers": ["a=b"], "start": "2026-11-02T10:00Z", "end": "2026-11-02T09:00Z"},
            "end: must be after",
        ),
        (
            {
                "name": "n",
                "matchers": ["a=b"],
                "weekly": {"days": ["sat"], "start": "02:00", "duration": "2h", "tz": "UTC"},
            },
            "weekly: unknown field",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": ["sa"], "start": "02:00", "duration": "2h"}},
            "days: 'sa'",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": [], "start": "02:00", "duration": "2h"}},
            "days: expected",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": ["sat"], "start": 120, "duration": "2h"}},
            "start: write the time quoted",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": ["sat"], "start": "25:00", "duration": "2h"}},
            "start: expected a time",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": ["sat"], "start": "02:00", "duration": "soon"}},
            "duration: expected",
        ),
        (
            {"name": "n", "matchers": ["a=b"], "weekly": {"days": ["sat"], "start": "02:00", "duration": "8d"}},
            "duration: at most 7d",
        ),
        (
            {
                "name": "n",
                "matchers": ["a=b"],
                "weekly": {"days": ["sat"], "start": "02:00", "duration": "2h", "timezone": "Mars/Base"},
            },
            "timezone: unknown",
        ),
        ({"name": "n", "matchers": ["a=b"], "until": "x"}, "unknown field"),
    ],
)
def test_invalid_windows_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(MaintenanceError, match=message):
        parse_window(raw, "w")
