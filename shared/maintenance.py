"""Maintenance windows: planned work during which alerts are expected. An incident opened by an alert inside a window
(and joined only by alerts inside one) is marked maintenance: shown as usual, but left out of response-time figures.

A window is a name, Alertmanager matchers (shared.matchers, at least one) and either a time range or a weekly
recurrence:

    {name: db-upgrade, matchers: ['host="db-1"'], start: "2026-11-02T09:00:00Z", end: "2026-11-02T12:00:00Z"}
    {name: backups, matchers: ['job="backup"'],
     weekly: {days: [sat], start: "02:00", duration: 2h, timezone: Europe/Berlin}}

The same definition comes from the correlation rules file (`maintenance:`) and from the web API (stored as JSON in
`maintenance_windows`), so one parser validates both. Everything here is pure: `in_maintenance` answers from its
arguments alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.matchers import Matcher, MatcherError, matchers_of_config, matches_all

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# A recurrence longer than a week would overlap itself; a range has no upper bound.
MAX_WEEKLY_DURATION = timedelta(days=7)
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


class MaintenanceError(ValueError):
    """A window definition that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Weekly:
    """Every week on `days` (0 = Monday) at `start`, wall-clock time in `timezone`, for `duration` of elapsed time.

    On the day clocks spring forward, a start inside the skipped hour begins at the same UTC offset as before the
    change (02:30 becomes 03:30 summer time); on the day they fall back, a start in the repeated hour is its first
    occurrence. The duration is real time, so a 2h window is two hours long on those days too."""

    days: frozenset[int]
    start: time
    duration: timedelta
    timezone: str

    def active_at(self, at: datetime) -> bool:
        zone = ZoneInfo(self.timezone)
        local_day = at.astimezone(zone).date()
        # Occurrences that began up to `duration` (plus a day for offsets) before `at` may still be running.
        for back in range(self.duration.days + 2):
            day = local_day - timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            begins = _local_start(day, self.start, zone)
            if begins <= at < begins + self.duration:
                return True
        return False


def _local_start(day: date, start: time, zone: ZoneInfo) -> datetime:
    # fold=0: a skipped wall time takes the offset from before the change; a repeated one is its first occurrence.
    return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class MaintenanceWindow:
    name: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime | None = None  # a range: [starts_at, ends_at), UTC
    ends_at: datetime | None = None
    weekly: Weekly | None = None
    id: int | None = None  # set for a window made through the API

    def active_at(self, at: datetime) -> bool:
        if self.weekly is not None:
            return self.weekly.active_at(at)
        assert self.starts_at is not None and self.ends_at is not None  # parse_window sets one or the other
        return self.starts_at <= at < self.ends_at

    def applies(self, labels: Mapping[str, str], at: datetime) -> bool:
        return self.active_at(at) and matches_all(self.matchers, labels)


def in_maintenance(
    windows: Iterable[MaintenanceWindow], labels: Mapping[str, str], at: datetime
) -> MaintenanceWindow | None:
    """The first window that is active at `at` (an aware datetime) and whose matchers all match `labels`."""
    if at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    for window in windows:
        if window.applies(labels, at):
            return window
    return None


# --- definitions --------------------------------------------------------------------------------

_FIELDS = {"name", "matchers", "start", "end", "weekly"}
_WEEKLY_FIELDS = {"days", "start", "duration", "timezone"}


def parse_window(raw: object, where: str, *, window_id: int | None = None) -> MaintenanceWindow:
    """One window from its definition (a mapping as the rules file or the API gives it)."""
    if not isinstance(raw, dict):
        raise MaintenanceError(f"{where}: expected a mapping with name, matchers and start/end or weekly")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise MaintenanceError(f"{where}: name: expected 1-100 letters, digits, '_', '.', '-'; got {name!r}")
    where = f"maintenance window {name!r}"
    _no_unknown(raw, _FIELDS, where)
    matchers = _matchers(raw.get("matchers"), where)
    has_range = "start" in raw or "end" in raw
    if has_range == ("weekly" in raw):
        raise MaintenanceError(f"{where}: expected either start and end (a time range) or weekly (a recurrence)")
    if "weekly" in raw:
        return MaintenanceWindow(name, matchers, weekly=_weekly(raw["weekly"], f"{where}: weekly"), id=window_id)
    starts_at = _instant(raw.get("start"), f"{where}: start")
    ends_at = _instant(raw.get("end"), f"{where}: end")
    if ends_at <= starts_at:
        raise MaintenanceError(f"{where}: end: must be after start")
    return MaintenanceWindow(name, matchers, starts_at=starts_at, ends_at=ends_at, id=window_id)


def window_definition(window: MaintenanceWindow) -> dict[str, Any]:
    """The window's definition in normal form (what parse_window reads back to an equal window); JSON-ready."""
    out: dict[str, Any] = {"name": window.name, "matchers": [str(m) for m in window.matchers]}
    if window.weekly is not None:
        w = window.weekly
        out["weekly"] = {
            "days": [DAYS[d] for d in sorted(w.days)],
            "start": w.start.strftime("%H:%M"),
            "duration": _format_duration(w.duration),
            "timezone": w.timezone,
        }
    else:
        assert window.starts_at is not None and window.ends_at is not None
        out["start"] = _iso(window.starts_at)
        out["end"] = _iso(window.ends_at)
    return out


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _matchers(raw: object, where: str) -> tuple[Matcher, ...]:
    try:
        # Required: a window without matchers would hold every alert, too easy to write by mistake.
        return tuple(matchers_of_config(raw, required=True))
    except MatcherError as exc:
        raise MaintenanceError(f"{where}: matchers: {exc}") from None


def _instant(raw: object, where: str) -> datetime:
    if isinstance(raw, datetime):  # YAML reads an unquoted timestamp itself
        at = raw
    elif isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise MaintenanceError(
                f"{where}: expected an ISO 8601 time like 2026-11-02T09:00:00Z; got {raw!r}"
            ) from None
    else:
        raise MaintenanceError(f"{where}: expected an ISO 8601 time like 2026-11-02T09:00:00Z; got {raw!r}")
    if at.tzinfo is None:
        # A time without an offset is a guess at the reader's zone: refused rather than guessed.
        raise MaintenanceError(f"{where}: {raw!s} has no time zone; add Z (UTC) or an offset such as +01:00")
    return at.astimezone(UTC)


def _weekly(raw: object, where: str) -> Weekly:
    if not isinstance(raw, dict):
        raise MaintenanceError(f"{where}: expected a mapping with days, start, duration and timezone")
    _no_unknown(raw, _WEEKLY_FIELDS, where)
    days_raw = raw.get("days")
    if isinstance(days_raw, str):
        days_raw = [days_raw]
    if not isinstance(days_raw, list) or not days_raw:
        raise MaintenanceError(f"{where}: days: expected a non-empty list of mon, tue, wed, thu, fri, sat, sun")
    days: set[int] = set()
    for d in days_raw:
        text = d.strip().lower() if isinstance(d, str) else ""
        if text in DAYS:
            days.add(DAYS.index(text))
        elif text in _FULL_DAYS:
            days.add(_FULL_DAYS.index(text))
        else:
            raise MaintenanceError(f"{where}: days: {d!r} is not one of mon, tue, wed, thu, fri, sat, sun")
    start_raw = raw.get("start")
    if isinstance(start_raw, int) and not isinstance(start_raw, bool):
        # YAML 1.1 reads an unquoted 02:00 as the base-60 number 120.
        raise MaintenanceError(f'{where}: start: write the time quoted, like "02:00"; YAML read it as {start_raw}')
    if not isinstance(start_raw, str) or not (m := _CLOCK.fullmatch(start_raw.strip())):
        raise MaintenanceError(f'{where}: start: expected a time of day HH:MM like "02:00"; got {start_raw!r}')
    start = time(int(m.group(1)), int(m.group(2)))
    duration = _duration(raw.get("duration"), f"{where}: duration")
    if duration > MAX_WEEKLY_DURATION:
        raise MaintenanceError(f"{where}: duration: at most 7d (a week); got {raw.get('duration')!r}")
    zone = raw.get("timezone", "UTC")
    if not isinstance(zone, str) or not zone:
        raise MaintenanceError(f"{where}: timezone: expected a time zone name like Europe/Berlin; got {zone!r}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MaintenanceError(
            f"{where}: timezone: unknown time zone {zone!r}; expected one like Europe/Berlin"
        ) from None
    return Weekly(frozenset(days), start, duration, zone)


def _duration(raw: object, where: str) -> timedelta:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return timedelta(seconds=raw)
    if not isinstance(raw, str) or not (m := _DURATION.fullmatch(raw.strip())) or not any(m.groups()):
        raise MaintenanceError(f"{where}: expected a duration like 30m, 2h, 1h30m; got {raw!r}")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    value = timedelta(days=d, hours=h, minutes=mi, seconds=s)
    if value <= timedelta(0):
        raise MaintenanceError(f"{where}: must be longer than 0; got {raw!r}")
    return value


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _no_unknown(raw: dict[Any, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise MaintenanceError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
