"""Response-time targets per severity (VIGIL_RESPONSE_TARGETS_FILE), and which of a period's incidents missed them.

The file::

    targets:
      critical: {acknowledge: 5m, resolve: 1h}
      warning: {acknowledge: 30m, resolve: 4h}

Durations are `90s`, `5m`, `1h30m`, `2d` (days, hours, minutes, seconds, in that order). A severity may set either
target or both; a severity not listed has none. Everything here is pure: the web loads the file once at start (a bad
file stops it, naming the field), and the audit decides misses row by row as they stream from PostgreSQL.

When an incident misses a target (strictly longer than the target; exactly on it is met):
- acknowledge: acknowledged later than the target after it opened; or never acknowledged in the data, and left
  unacknowledged longer than the target: until it resolved, or, still open, until the audit's `as_of`. An incident
  that resolved unacknowledged within the target, or is younger than it, has not missed it (yet).
- resolve: resolved later than the target after it opened; or still open at `as_of` for longer than the target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from shared.config_files import ConfigFileError, read_yaml
from shared.contracts import SEVERITY_RANK

Kind = Literal["acknowledge", "resolve"]
KINDS: tuple[Kind, ...] = ("acknowledge", "resolve")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class TargetsError(ValueError):
    """An unusable targets file; the message names the field."""


@dataclass(frozen=True)
class Target:
    """One severity's targets; None: no target of that kind."""

    acknowledge: timedelta | None = None
    resolve: timedelta | None = None

    def of(self, kind: Kind) -> timedelta | None:
        return self.acknowledge if kind == "acknowledge" else self.resolve


@dataclass(frozen=True)
class ResponseTargets:
    """Targets by severity (lower case, as `shared.contracts.SEVERITY_RANK` names them)."""

    by_severity: Mapping[str, Target] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_severity)

    def ordered(self) -> list[tuple[str, Target]]:
        """Most severe first, as every severity list in Vigil."""
        return sorted(self.by_severity.items(), key=lambda item: -SEVERITY_RANK[item[0]])

    def for_severity(self, severity: str | None) -> Target | None:
        return self.by_severity.get((severity or "none").lower())


NO_TARGETS = ResponseTargets()


def parse_duration(value: object, where: str) -> timedelta:
    """`5m`, `1h30m`, `2d`, `90s` (or a whole number of seconds); above zero."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None or not any(match.groups()):
            raise TargetsError(f"{where}: expected a duration like 5m, 1h30m or 2d; got {value!r}")
        d, h, m, s = (int(g or 0) for g in match.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise TargetsError(f"{where}: must be longer than 0s; got {value!r}")
    return timedelta(seconds=seconds)


def parse_targets(raw: object) -> ResponseTargets:
    """The file's YAML, checked: every mistake is reported with the path of the field (`targets.critical.resolve`)."""
    if raw is None:
        return NO_TARGETS
    if not isinstance(raw, dict):
        raise TargetsError("expected a mapping with `targets`")
    unknown = sorted(str(k) for k in raw if k != "targets")
    if unknown:
        raise TargetsError(f"{unknown[0]}: unknown key; the file has only `targets`")
    severities = raw.get("targets") or {}
    if not isinstance(severities, dict):
        raise TargetsError("targets: expected a mapping of severity to {acknowledge, resolve}")
    parsed: dict[str, Target] = {}
    for name, item in severities.items():
        where = f"targets.{name}"
        # Only the severities Vigil ranks: a misspelt one would silently set no target at all.
        if not isinstance(name, str) or name.lower() not in SEVERITY_RANK:
            raise TargetsError(f"{where}: unknown severity; expected one of {', '.join(SEVERITY_RANK)}")
        if name.lower() in parsed:
            raise TargetsError(f"{where}: listed twice")
        if not isinstance(item, dict) or not item:
            raise TargetsError(f"{where}: expected a mapping with acknowledge and/or resolve")
        extra = sorted(str(k) for k in item if k not in KINDS)
        if extra:
            raise TargetsError(f"{where}.{extra[0]}: unknown target; expected acknowledge or resolve")
        ack, res = (
            parse_duration(item[kind], f"{where}.{kind}") if item.get(kind) is not None else None for kind in KINDS
        )
        if ack is None and res is None:
            raise TargetsError(f"{where}: expected a mapping with acknowledge and/or resolve")
        parsed[name.lower()] = Target(acknowledge=ack, resolve=res)
    return ResponseTargets(parsed)


def load_targets(path: Path | None) -> ResponseTargets:
    """The targets in `path`; none when unset. Errors name the file and the field."""
    if path is None:
        return NO_TARGETS
    try:
        raw = read_yaml(path)
    except ConfigFileError as exc:
        raise TargetsError(str(exc)) from None
    try:
        return parse_targets(raw)
    except TargetsError as exc:
        raise TargetsError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Miss:
    """One target one incident missed. `reached` False: not acknowledged (or resolved) at all by `as_of`, and
    `actual_s` is how long it had gone without."""

    key: str
    severity: str
    rule: str
    target: Kind
    actual_s: float
    target_s: float
    reached: bool


def misses(
    targets: ResponseTargets,
    *,
    key: str,
    severity: str,
    rule: str,
    opened_at: datetime,
    acknowledged_at: datetime | None,
    resolved_at: datetime | None,
    as_of: datetime,
) -> Iterator[Miss]:
    """The targets this incident missed, acknowledge first (see the module's docstring for the rules)."""
    target = targets.for_severity(severity)
    if target is None:
        return
    # Unacknowledged, it waited until it resolved, or, still open, until as_of.
    waited_until = {"acknowledge": resolved_at or as_of, "resolve": as_of}
    for kind in KINDS:
        limit = target.of(kind)
        if limit is None:
            continue
        done = acknowledged_at if kind == "acknowledge" else resolved_at
        actual = (done if done is not None else waited_until[kind]) - opened_at
        if actual > limit:
            yield Miss(
                key, severity, rule, kind, actual.total_seconds(), limit.total_seconds(), reached=done is not None
            )
