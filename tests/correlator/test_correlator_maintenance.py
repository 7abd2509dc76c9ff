"""Maintenance windows in the correlator: the rules file's `maintenance:` list, which incidents the core marks, and
the running correlator marking incidents from the file's windows and from the web API's (`maintenance_windows`)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from services.correlator.lifecycle import World, apply_alert
from services.correlator.rules import RulesError, load_rules, parse_rules
from shared.config import Settings
from shared.maintenance import window_definition
from tests.correlator.harness import RULES_YAML, T0, alert_envelope, correlator, count_is
from tests.correlator.test_correlator_lifecycle import change

WINDOWS_YAML = """
maintenance:
  - name: db-upgrade
    matchers: ['instance=~"db-.*"']
    start: 2026-11-02T09:30:00Z
    end: "2026-11-02T11:00:00Z"
  - name: saturday-backups
    matchers: ['alertname="BackupRunning"', 'severity!="critical"']
    weekly: {days: [sat], start: "02:00", duration: 2h, timezone: Europe/Berlin}
"""


def test_the_rules_file_holds_maintenance_windows(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(RULES_YAML + WINDOWS_YAML)
    rules = load_rules(path)
    assert [w.name for w in rules.maintenance] == ["db-upgrade", "saturday-backups"]
    assert window_definition(rules.maintenance[0])["start"] == "2026-11-02T09:30:00Z"
    weekly = rules.maintenance[1].weekly
    assert weekly is not None and weekly.days == {5} and weekly.timezone == "Europe/Berlin"
    assert parse_rules({}).maintenance == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"maintenance": {"name": "x"}}, "maintenance: expected a list"),
        ({"maintenance": [{"matchers": ["a=b"]}]}, r"maintenance\[0\]: name: expected"),
        (
            {"maintenance": [{"name": "w", "matchers": ["a=b"], "weekly": {"days": ["sat"], "start": 120}}]},
            "maintenance window 'w': weekly: start: write the time quoted",
        ),
        (
            {"maintenance": [{"name": "w", "matchers": ["a=b"], "start": "2026-11-02T09:00Z"}]},
            "maintenance window 'w': end",
        ),
        (
            {
                "maintenance": [
                    {"name": "w", "matchers": ["a=b"], "start": "2026-11-02T09:00Z", "end": "2026-11-02T10:00Z"},
                    {"name": "w", "matchers": ["a=c"], "start": "2026-11-02T09:00Z", "end": "2026-11-02T10:00Z"},
                ]
            },
            "maintenance window 'w': name: used by an earlier window",
        ),
    ],
)
def test_invalid_windows_in_the_rules_file_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(raw)


RULES = parse_rules(
    {
        "rules": [{"name": "default", "group_by": ["$host"]}],
        "maintenance": [
            {
                "name": "web-work",
                "matchers": ['instance=~"web-.*"'],
                "start": "2026-11-02T10:00Z",
                "end": "2026-11-02T11:00Z",
            }
        ],
    }
)


def test_an_incident_opened_inside_a_window_is_maintenance_until_an_alert_outside_joins() -> None:
    world = World(RULES)
    apply_alert(world, change("HostDown", "web-1", starts=5))
    apply_alert(world, change("DiskFull", "web-1", starts=30))
    [inc] = world.incidents.values()
    assert inc.maintenance == "web-work"
    # After the window: a real problem joined the incident, which is real from now on.
    apply_alert(world, change("CpuHigh", "web-1", starts=61))
    assert inc.maintenance is None
    apply_alert(world, change("Load", "web-1", starts=40))
    assert inc.maintenance is None  # never marked again


def test_an_incident_opened_outside_a_window_is_not_maintenance() -> None:
    world = World(RULES)
    apply_alert(world, change("HostDown", "web-1", starts=-5))  # before the window
    apply_alert(world, change("DiskFull", "web-1", starts=10))  # inside, but joins a real incident
    apply_alert(world, change("HostDown", "db-1", starts=10))  # inside the time, not matched
    assert [i.maintenance for i in world.incidents.values()] == [None, None]


# --- the running correlator -----------------------------------------------------------------------


async def test_an_alert_inside_a_rules_file_window_opens_a_maintenance_incident(
    settings: Settings, tmp_path: Path
) -> None:
    async with correlator(settings, tmp_path, RULES_YAML + WINDOWS_YAML) as h:
        # T0 is 10:00Z, inside db-upgrade; web-1 is not matched by it.
        await h.send(
            alert_envelope(host="db-1", starts_at=T0),
            alert_envelope(host="web-1", starts_at=T0),
            alert_envelope(host="db-2", starts_at=T0 + timedelta(hours=2)),  # after the window
        )
        await h.settled(await count_is(h, 3))
        incidents = {tuple(i["hosts"]): i for i in await h.incidents()}
        events = await h.events()
    assert incidents[("db-1",)]["maintenance"] == "db-upgrade"
    assert incidents[("web-1",)]["maintenance"] is None
    assert incidents[("db-2",)]["maintenance"] is None
    # Shown as usual: announced and published like any other incident.
    assert incidents[("db-1",)]["announced"] and len([e for e in events if e["type"] == "incident.opened"]) == 3


async def test_a_window_made_through_the_api_applies_to_the_next_batch(settings: Settings, tmp_path: Path) -> None:
    async with correlator(settings, tmp_path) as h:
        definition = {
            "name": "web-reboot",
            "matchers": ['instance=~"web-.*"'],
            "start": (T0 - timedelta(minutes=5)).isoformat(),
            "end": (T0 + timedelta(minutes=30)).isoformat(),
        }
        await h.query(
            "INSERT INTO maintenance_windows (name, definition, ends_at) VALUES (%s, %s::jsonb, %s) RETURNING id",
            "web-reboot",
            json.dumps(definition),
            T0 + timedelta(minutes=30),
        )
        await h.send(alert_envelope(host="web-1", starts_at=T0), alert_envelope(host="db-1", starts_at=T0))
        await h.settled(await count_is(h, 2))
        marks = {i["hosts"][0]: i["maintenance"] for i in await h.incidents()}
    assert marks == {"web-1": "web-reboot", "db-1": None}
