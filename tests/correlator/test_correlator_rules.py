"""Pure tests of matchers, rules files, grouping and titles (no I/O)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.correlator.rules import (
    DEFAULT_RULES,
    RulesError,
    group_host,
    group_key,
    group_labels,
    load_rules,
    parse_duration,
    parse_rules,
    render_title,
)


def test_rule_matchers_mean_what_they_mean_in_alertmanager() -> None:
    """The old parser read `db\\d+` as `dbd+`; a rule must match db12, not dbdd."""
    rules = parse_rules({"rules": [{"name": "db", "matchers": ['{instance=~"db\\d+", env=~"prod|stage"}']}]})
    assert rules.rules[0].matches({"instance": "db12", "env": "stage"})
    assert not rules.rules[0].matches({"instance": "dbdd", "env": "stage"})
    assert not rules.rules[0].matches({"instance": "db12", "env": "dev"})
    assert rules.rules[0].matchers[0].value == "db\\d+"  # written back escaped, as Alertmanager's %q does


@pytest.mark.parametrize("text", ['a=="x"', 'a="x', 'a=~"("', "", 'a="1" b="2"', "a"])
def test_bad_rule_matchers_are_errors(text: str) -> None:
    with pytest.raises(RulesError, match="rule 'r': matchers"):
        parse_rules({"rules": [{"name": "r", "matchers": [text]}]})


@pytest.mark.parametrize(
    ("labels", "host"),
    [
        ({"instance": "web-1:9100", "host": "other", "job": "node"}, "web-1"),
        ({"instance": "10.0.0.5:9100"}, "10.0.0.5"),
        ({"instance": "[2001:db8::1]:9100"}, "2001:db8::1"),
        ({"instance": "2001:db8::1"}, "2001:db8::1"),
        ({"instance": "db.example.org"}, "db.example.org"),
        ({"host": "web-2", "job": "node"}, "web-2"),
        ({"job": "blackbox", "alertname": "ProbeFailed"}, "blackbox"),
        ({"alertname": "Watchdog"}, "Watchdog"),
    ],
)
def test_host_derivation(labels: dict[str, str], host: str) -> None:
    assert group_host(labels) == host


def test_default_rule_groups_by_host() -> None:
    rule = DEFAULT_RULES.select({"alertname": "X"})
    a = group_labels(rule, {"alertname": "HostDown", "instance": "web-1:9100"})
    b = group_labels(rule, {"alertname": "DiskFull", "instance": "web-1:9182", "mountpoint": "/"})
    assert a == b == {"host": "web-1"}
    assert group_key(rule, a) == 'default:{"host":"web-1"}'
    assert rule.window == timedelta(hours=1)


RULES = """
defaults: {window: 2h, reopen_window: 10m, resolve_grace: 1m, stale_after: 5h, flapping: {changes: 4, window: 10m}}
rules:
  - name: security
    matchers: ['source="fail2ban"']
    group_by: [jail]
    title: "Bans in {{ group.jail }}"
  - name: db
    matchers: ['{job="postgres", severity=~"critical|error"}']
    group_by: [$host, alertname]
    window: 15m
    min_alerts: 2
  - name: everything
    group_by: ["..."]
"""


def test_rules_first_match_wins_and_fields_parse(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(RULES)
    rules = load_rules(path)
    assert [r.name for r in rules.rules] == ["security", "db", "everything"]
    assert rules.defaults.flapping.changes == 4 and rules.defaults.stale_after == timedelta(hours=5)
    db = rules.select({"job": "postgres", "severity": "error", "instance": "pg-1:9187", "alertname": "Lag"})
    assert db.name == "db" and db.min_alerts == 2 and db.window == timedelta(minutes=15)
    assert db.reopen_window == timedelta(minutes=10)  # from defaults
    assert group_labels(db, {"instance": "pg-1:9187", "alertname": "Lag"}) == {"host": "pg-1", "alertname": "Lag"}
    assert rules.select({"job": "postgres", "severity": "warning"}).name == "everything"
    assert rules.select({"source": "fail2ban", "job": "postgres", "severity": "error"}).name == "security"
    everything = rules.by_name("everything")
    assert everything is not None and group_labels(everything, {"b": "2", "a": "1"}) == {"a": "1", "b": "2"}


def test_a_catch_all_default_is_appended_when_the_file_has_none() -> None:
    rules = parse_rules({"rules": [{"name": "only-crit", "matchers": ['severity="critical"']}]})
    assert [r.name for r in rules.rules] == ["only-crit", "default"]
    assert rules.select({"severity": "info"}).name == "default"
    assert parse_rules(None).rules[0].name == "default"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rules": [{"name": "a", "matchers": ['severity=~"(" ']}]}, "rule 'a': matchers: error parsing regexp"),
        ({"rules": [{"name": "a", "window": "soon"}]}, "rule 'a': window: expected a duration"),
        ({"rules": [{"name": "a", "min_alerts": 0}]}, "rule 'a': min_alerts"),
        ({"rules": [{"name": "a", "group_by": ["bad-label"]}]}, "rule 'a': group_by"),
        ({"rules": [{"name": "a", "title": "{{ broken"}]}, "rule 'a': title"),
        ({"rules": [{"name": "a", "windw": "1h"}]}, "rule 'a': unknown field(s) windw"),
        ({"rules": [{"name": "a"}, {"name": "a"}]}, "rule 'a': name: used by an earlier rule"),
        ({"rules": [{"matchers": []}]}, "rules[0]: name"),
        ({"defaults": {"stale_after": "3x"}}, "defaults.stale_after"),
        ({"defaults": {"flapping": {"changes": 1}}}, "defaults.flapping.changes"),
        ({"rules": [{"name": "default", "matchers": ['a="1"']}]}, "rule 'default': matchers"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_rules_name_the_rule_and_field(raw: object, message: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(raw)
    assert message in str(info.value)


def test_unreadable_or_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match=r"bad\.yml: not valid YAML"):
        load_rules(bad)


def test_the_shipped_rules_file_is_valid() -> None:
    rules = load_rules(Path("deploy/correlation.yml"))
    assert rules.rules[-1].name == "default" and not rules.rules[-1].matchers


def test_durations() -> None:
    assert parse_duration("1h30m", "x") == timedelta(minutes=90)
    assert parse_duration("90s", "x") == timedelta(seconds=90)
    assert parse_duration("2d", "x") == timedelta(days=2)
    assert parse_duration(45, "x") == timedelta(seconds=45)
    for bad in ("", "h", "1x", True, None, "-5m"):
        with pytest.raises(RulesError):
            parse_duration(bad, "x")


def test_titles_treat_alert_values_as_data() -> None:
    rules = parse_rules({"rules": [{"name": "t", "title": "{{ labels.job }} {{ annotations.summary }} on {{ host }}"}]})
    rule = rules.rules[0]
    labels = {"job": "{{ 7*7 }}", "instance": "web-1:9100"}
    title = render_title(rule, {"host": "web-1"}, labels, {"summary": "a\nb <script>x</script>"})
    assert title == "{{ 7*7 }} a b <script>x</script> on web-1"  # no evaluation, no newlines; escaping is the reader's


def test_titles_cannot_reach_python_internals() -> None:
    rules = parse_rules({"rules": [{"name": "t", "title": "{{ labels.__class__.__mro__[1].__subclasses__() }}"}]})
    title = render_title(rules.rules[0], {"host": "h"}, {"alertname": "A"}, {})
    assert "subclasses" not in title and "class" not in title


def test_title_is_bounded_and_never_empty() -> None:
    rule = parse_rules({"rules": [{"name": "t", "title": "{{ labels.x }}"}]}).rules[0]
    assert len(render_title(rule, {}, {"x": "y" * 1000}, {})) == 300
    assert render_title(rule, {}, {}, {}) == "t"
