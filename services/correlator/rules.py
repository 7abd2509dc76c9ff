"""Correlation rules: the YAML file, its validation, and the pure functions that pick a rule for an alert,
compute its group and render an incident title."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.config_files import ConfigFileError, read_yaml
from shared.maintenance import MaintenanceError, MaintenanceWindow, parse_window
from shared.matchers import Matcher, MatcherError, matchers_of_config, matches_all

HOST = "$host"  # group_by value: the alert's host (instance without port → host → job → alertname)
ALL_LABELS = "..."  # group_by value: every label, as in Alertmanager's route
DEFAULT_TITLE = "{{ alertname }} on {{ host }}"
TITLE_MAX = 300
# Group keys up to this size are kept as they read; longer ones are hashed (see group_key).
GROUP_KEY_MAX_BYTES = 1024

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=Undefined)


class RulesError(ValueError):
    """The rules file is unusable; the message names the rule and field."""


@dataclass(frozen=True)
class Flapping:
    changes: int = 6
    window: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class Defaults:
    window: timedelta = timedelta(hours=1)
    reopen_window: timedelta = timedelta(minutes=30)
    resolve_grace: timedelta = timedelta(minutes=5)
    stale_after: timedelta = timedelta(hours=9)
    flapping: Flapping = Flapping()


@dataclass(frozen=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = (HOST,)
    window: timedelta = timedelta(hours=1)
    reopen_window: timedelta = timedelta(minutes=30)
    min_alerts: int = 1
    title: str = DEFAULT_TITLE

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)


@dataclass(frozen=True)
class RuleSet:
    defaults: Defaults
    rules: tuple[Rule, ...]
    # The file's maintenance windows, then (per batch) those made through the API (shared.maintenance).
    maintenance: tuple[MaintenanceWindow, ...] = ()
    _by_name: dict[str, Rule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({r.name: r for r in self.rules})

    def select(self, labels: Mapping[str, str]) -> Rule:
        """First matching rule; the last rule is always a catch-all (the loader guarantees it)."""
        for rule in self.rules:
            if rule.matches(labels):
                return rule
        return self.rules[-1]

    def by_name(self, name: str) -> Rule | None:
        return self._by_name.get(name)


def default_rule(defaults: Defaults) -> Rule:
    return Rule(name="default", window=defaults.window, reopen_window=defaults.reopen_window)


DEFAULT_RULES = RuleSet(Defaults(), (default_rule(Defaults()),))


# --- pure helpers over labels -------------------------------------------------------------------


def host_of(labels: Mapping[str, str]) -> str | None:
    """The machine an alert is about: `instance` without its port, else `host`; None if neither."""
    instance = labels.get("instance", "").strip()
    if instance:
        return strip_port(instance)
    return labels.get("host", "").strip() or None


def strip_port(instance: str) -> str:
    if instance.startswith("["):  # [::1]:9100
        end = instance.find("]")
        return instance[1:end] if end > 0 else instance
    host, sep, port = instance.rpartition(":")
    if sep and port.isdigit() and host and ":" not in host:
        return host
    return instance


def group_host(labels: Mapping[str, str]) -> str:
    return host_of(labels) or labels.get("job", "").strip() or labels.get("alertname", "") or ""


def group_labels(rule: Rule, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that define the alert's group under `rule`; a missing label groups as ''."""
    if ALL_LABELS in rule.group_by:
        return dict(sorted(labels.items()))
    out: dict[str, str] = {}
    for name in rule.group_by:
        if name == HOST:
            out["host"] = group_host(labels)
        else:
            out[name] = labels.get(name, "")
    return out


def group_key(rule: Rule, grouped: Mapping[str, str]) -> str:
    """The rule's name and the group labels; when that is long, the rule's name and a hash of it, so the indexed
    key stays far below PostgreSQL's index row limit (about 2.7 kB) whatever the labels hold."""
    key = f"{rule.name}:{json.dumps(dict(sorted(grouped.items())), ensure_ascii=False, separators=(',', ':'))}"
    if len(key) * 4 <= GROUP_KEY_MAX_BYTES or len(key.encode()) <= GROUP_KEY_MAX_BYTES:
        return key
    return f"{rule.name}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def render_title(
    rule: Rule,
    grouped: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> str:
    """The incident title from the rule's template; alert values are data, never template code."""
    context: dict[str, Any] = {
        "group": dict(grouped),
        "labels": dict(labels),
        "annotations": dict(annotations),
        "alertname": labels.get("alertname", ""),
        "severity": labels.get("severity", ""),
        "host": grouped.get("host") or group_host(labels),
        "rule": rule.name,
    }
    try:
        text = _compiled(rule.title).render(context)
    except TemplateError:
        text = f"{context['alertname'] or rule.name} on {context['host']}"
    text = " ".join(text.split())  # no newlines or control whitespace in a title
    return text[:TITLE_MAX] or rule.name


@functools.lru_cache(maxsize=256)
def _compiled(title: str) -> Template:
    return _env.from_string(title)


# --- the file -----------------------------------------------------------------------------------


def parse_duration(value: object, where: str) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str) or not value or not (m := _DURATION.fullmatch(value.strip())) or not any(m.groups()):
        raise RulesError(f"{where}: expected a duration like 90s, 5m, 1h30m; got {value!r}")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


def load_rules(path: Path) -> RuleSet:
    try:
        raw = read_yaml(path)
    except ConfigFileError as exc:
        raise RulesError(str(exc)) from None
    try:
        return parse_rules(raw)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None


def parse_rules(raw: object) -> RuleSet:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RulesError("expected a mapping with `defaults` and `rules`")
    _no_unknown(raw, {"defaults", "rules", "maintenance"}, "top level")
    defaults = _parse_defaults(raw.get("defaults") or {})
    items = raw.get("rules") or []
    if not isinstance(items, list):
        raise RulesError("rules: expected a list")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        rule = _parse_rule(item, index, defaults)
        if rule.name in names:
            raise RulesError(f"rule {rule.name!r}: name: used by an earlier rule")
        names.add(rule.name)
        rules.append(rule)
    if not rules or rules[-1].matchers:
        if "default" in names:
            raise RulesError("rule 'default': matchers: the rule named default must be the last, with no matchers")
        rules.append(default_rule(defaults))
    return RuleSet(defaults, tuple(rules), _parse_maintenance(raw.get("maintenance") or []))


def _parse_maintenance(items: object) -> tuple[MaintenanceWindow, ...]:
    if not isinstance(items, list):
        raise RulesError("maintenance: expected a list of windows")
    windows: list[MaintenanceWindow] = []
    for index, item in enumerate(items):
        try:
            window = parse_window(item, f"maintenance[{index}]")
        except MaintenanceError as exc:
            raise RulesError(str(exc)) from None
        if any(w.name == window.name for w in windows):
            raise RulesError(f"maintenance window {window.name!r}: name: used by an earlier window")
        windows.append(window)
    return tuple(windows)


def _parse_defaults(raw: object) -> Defaults:
    if not isinstance(raw, dict):
        raise RulesError("defaults: expected a mapping")
    _no_unknown(raw, {"window", "reopen_window", "resolve_grace", "stale_after", "flapping"}, "defaults")
    base = Defaults()
    flapping = base.flapping
    if "flapping" in raw:
        f = raw["flapping"]
        if not isinstance(f, dict):
            raise RulesError("defaults.flapping: expected a mapping with changes and window")
        _no_unknown(f, {"changes", "window"}, "defaults.flapping")
        changes = f.get("changes", flapping.changes)
        if not isinstance(changes, int) or isinstance(changes, bool) or changes < 2:
            raise RulesError(f"defaults.flapping.changes: expected an integer of at least 2; got {changes!r}")
        window = parse_duration(f["window"], "defaults.flapping.window") if "window" in f else flapping.window
        flapping = Flapping(changes, window)
    durations = {
        name: parse_duration(raw[name], f"defaults.{name}") if name in raw else getattr(base, name)
        for name in ("window", "reopen_window", "resolve_grace", "stale_after")
    }
    return Defaults(flapping=flapping, **durations)


def _parse_rule(item: object, index: int, defaults: Defaults) -> Rule:
    if not isinstance(item, dict):
        raise RulesError(f"rules[{index}]: expected a mapping")
    name = item.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise RulesError(f"rules[{index}]: name: expected 1-100 letters, digits, '_', '.', '-'; got {name!r}")
    where = f"rule {name!r}"
    _no_unknown(item, {"name", "matchers", "group_by", "window", "reopen_window", "min_alerts", "title"}, where)
    try:
        matchers = matchers_of_config(item.get("matchers") or [])
    except MatcherError as exc:
        raise RulesError(f"{where}: matchers: {exc}") from None
    group_by = item.get("group_by", [HOST])
    if not isinstance(group_by, list) or not group_by or not all(isinstance(g, str) for g in group_by):
        raise RulesError(f"{where}: group_by: expected a non-empty list of label names, `$host` or `...`")
    for g in group_by:
        if g not in (HOST, ALL_LABELS) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", g):
            raise RulesError(f"{where}: group_by: {g!r} is not a label name, `$host` or `...`")
    min_alerts = item.get("min_alerts", 1)
    if not isinstance(min_alerts, int) or isinstance(min_alerts, bool) or not 1 <= min_alerts <= 10_000:
        raise RulesError(f"{where}: min_alerts: expected an integer from 1 to 10000; got {min_alerts!r}")
    title = item.get("title", DEFAULT_TITLE)
    if not isinstance(title, str) or not title.strip():
        raise RulesError(f"{where}: title: expected a non-empty template string")
    try:
        _env.from_string(title)
    except TemplateError as exc:
        raise RulesError(f"{where}: title: not a valid template: {exc}") from None
    return Rule(
        name=name,
        matchers=tuple(matchers),
        group_by=tuple(dict.fromkeys(group_by)),
        window=parse_duration(item["window"], f"{where}: window") if "window" in item else defaults.window,
        reopen_window=(
            parse_duration(item["reopen_window"], f"{where}: reopen_window")
            if "reopen_window" in item
            else defaults.reopen_window
        ),
        min_alerts=min_alerts,
        title=title,
    )


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise RulesError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
