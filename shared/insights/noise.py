"""Noise and alert quality over a period: the funnel from notifications to incidents, per alert name and per rule how
much each costs and how much anyone cared, and the noisiest alerts, each with a suggestion the figures bear out.

The figures are PostgreSQL's (noise.sql): the audit reads them in its snapshot (`read_noise_sync` on its blocking
connection), the insights page on its async one (`read_noise`, `read_noisiest`). Everything else here is pure: rows
in, dataclasses out, and `suggest` decides a suggestion from one alert's figures alone.

Definitions (noise.sql says the same beside the SQL):
- A period's groups are the incidents opened in [since, until): announced ones are its incidents (the audit's), ones
  never announced are groups held back by their rule's `min_alerts`. Maintenance incidents and groups are left out of
  every figure (the funnel counts them apart), as from the audit's response times: planned work is not noise to tune.
- Notifications: every notification Vigil received for an occurrence (`alerts.notifications`, counted by the
  correlator: the first, each repeat, the resolve; a redelivery of the newest one already counted is not counted
  again). An occurrence and all its notifications belong to the period its incident opened in.
- Unacknowledged: an incident resolved that nobody ever acknowledged (a silence's acknowledgement counts: someone made
  the silence). Flapping: an incident that flapped at any time (marked now, or `flapping_started` in its timeline).
- Time firing of an occurrence: starts_at to its end (ends_at, else when the resolve came). One not resolved counts
  to a lower bound (stale: when last seen; firing: the read's time), so the median is never overstated.
- Noisiest: by notifications, then occurrences, then name (the order of `noise_by_alert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from shared.db import Connection, Queries

Q = Queries(Path(__file__).with_name("noise.sql"))
TOP_NOISIEST = 10
# Incidents of one alert that open this close together are one cause on several groups (hosts), not several causes.
CLUSTER_WINDOW = timedelta(minutes=5)
# Below this many incidents the shares say too little about an alert to suggest changing it.
MIN_INCIDENTS = 5
# A median time firing below this is a blip: the condition went away before anyone could act.
SHORT_FIRING = timedelta(minutes=5)
MOSTLY = 0.75  # "most of its incidents": unacknowledged, or of one alert each
HALF = 0.5  # flapping, or opened together with another of its incidents

Action = Literal["raise_for", "group_by", "min_alerts", "none"]


@dataclass(frozen=True)
class Funnel:
    """Notifications → alert occurrences → incidents, over the period's groups outside maintenance.

    `notifications` and `occurrences` include the held-back groups' (`held_back_*` says how many of them);
    `incidents` are the announced ones. `maintenance_*`: what maintenance incidents and groups had, left out of the
    rest.
    """

    notifications: int = 0
    occurrences: int = 0
    incidents: int = 0
    held_back: int = 0
    held_back_occurrences: int = 0
    held_back_notifications: int = 0
    maintenance_incidents: int = 0
    maintenance_held_back: int = 0
    maintenance_occurrences: int = 0
    maintenance_notifications: int = 0

    @property
    def repeats(self) -> int:
        """Notifications past each occurrence's first: repeats and resolves."""
        return self.notifications - self.occurrences

    @property
    def notifications_per_incident(self) -> float | None:
        return self.notifications / self.incidents if self.incidents else None

    def as_json(self) -> dict[str, int]:
        """The fields and `repeats`, as the audit's JSON and an API give them."""
        return {**asdict(self), "repeats": self.repeats}


@dataclass(frozen=True)
class Quality:
    """One alert name's (or one rule's) figures over the period, maintenance left out.

    name: the alert name (or the rule); rule: for an alert, the rule most of its groups fell under (None for a rule).
    incidents: announced incidents holding it; held_back: groups held back by min_alerts holding it.
    unacknowledged, flapping, single_alert (of one occurrence in all), clustered (opened within CLUSTER_WINDOW after
    another of its incidents): counts of those incidents. hosts: distinct hosts of its occurrences. not_resolved: its
    occurrences with no resolve yet, whose time firing is a lower bound. median_firing_s: over its occurrences.
    """

    name: str
    rule: str | None
    notifications: int
    occurrences: int
    incidents: int
    held_back: int
    unacknowledged: int
    flapping: int
    single_alert: int
    clustered: int
    hosts: int
    not_resolved: int
    median_firing_s: float | None

    @property
    def unacknowledged_share(self) -> float | None:
        """Share of its incidents resolved without anyone acknowledging; None without incidents."""
        return self.unacknowledged / self.incidents if self.incidents else None

    @property
    def flapping_share(self) -> float | None:
        return self.flapping / self.incidents if self.incidents else None

    @property
    def single_alert_share(self) -> float | None:
        return self.single_alert / self.incidents if self.incidents else None

    @property
    def clustered_share(self) -> float | None:
        return self.clustered / self.incidents if self.incidents else None

    def as_json(self) -> dict[str, Any]:
        """The fields and the shares (fractions from 0 to 1, None without incidents); durations in seconds."""
        return {
            **asdict(self),
            "unacknowledged_share": self.unacknowledged_share,
            "flapping_share": self.flapping_share,
            "single_alert_share": self.single_alert_share,
            "clustered_share": self.clustered_share,
        }


@dataclass(frozen=True)
class Suggestion:
    """What to change (`action`, `text`) and the figures that led to it (`evidence`), both plain text."""

    action: Action
    text: str
    evidence: str


@dataclass(frozen=True)
class Noisy:
    alert: Quality
    suggestion: Suggestion

    def as_json(self) -> dict[str, Any]:
        return {**self.alert.as_json(), "suggestion": asdict(self.suggestion)}


@dataclass(frozen=True)
class Noise:
    """The whole section: the funnel, every alert name and rule (noisiest first), the noisiest alerts."""

    funnel: Funnel
    by_alert: list[Quality]
    by_rule: list[Quality]
    noisiest: list[Noisy]


def duration_text(seconds: float) -> str:
    """`1h 02m 03s`, `4m 05s`, `7s`: the suggestions' wording, exact to the second."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _of(part: int, whole: int) -> str:
    return f"{part} of {whole}"


def suggest(q: Quality) -> Suggestion:
    """One suggestion for an alert, from its own figures; the first rule that holds wins, and the evidence states
    the figures it held on:

    1. raise `for:` when most of its incidents resolved without anyone acknowledging and its median time firing is
       short (a blip gone before anyone acts), or when at least half its incidents flapped;
    2. group differently when most of its incidents held this one alert and at least half of them opened within
       CLUSTER_WINDOW of another, on more than one host (one cause split into an incident per host);
    3. make it a rule with `min_alerts` when most of its incidents held this one alert and most went unacknowledged
       (alone it is not worth an incident);
    otherwise none. Nothing is suggested from fewer than MIN_INCIDENTS incidents.
    """
    n = q.incidents
    if n < MIN_INCIDENTS:
        return Suggestion("none", "none: too few incidents to judge", f"{n} incidents (fewer than {MIN_INCIDENTS})")
    unacked = q.unacknowledged / n
    single = q.single_alert / n
    if unacked >= MOSTLY and q.median_firing_s is not None and q.median_firing_s < SHORT_FIRING.total_seconds():
        median = duration_text(q.median_firing_s)
        return Suggestion(
            "raise_for",
            f"raise `for:` in its alerting rule (to more than {median}: half its occurrences fired for less)",
            f"median time firing {median}; {_of(q.unacknowledged, n)} incidents resolved without acknowledgement",
        )
    if q.flapping / n >= HALF:
        return Suggestion(
            "raise_for",
            "raise `for:` (or set `keep_firing_for:`) in its alerting rule, so it stops flapping",
            f"{_of(q.flapping, n)} incidents flapped",
        )
    if single >= MOSTLY and q.clustered / n >= HALF and q.hosts > 1:
        rule = f"rule `{q.rule}`" if q.rule else "its rule"
        return Suggestion(
            "group_by",
            f"group it differently: {rule} opens an incident per group; a `group_by` without the host label "
            f"(e.g. `[alertname]`) would make one incident of alerts that fire together",
            f"{_of(q.single_alert, n)} incidents held this one alert; {_of(q.clustered, n)} opened within "
            f"{duration_text(CLUSTER_WINDOW.total_seconds())} of another; on {q.hosts} hosts",
        )
    if single >= MOSTLY and unacked >= MOSTLY:
        return Suggestion(
            "min_alerts",
            "make it a rule with `min_alerts` (deploy/correlation.yml), so one such alert alone is no incident",
            f"{_of(q.single_alert, n)} incidents held this one alert; {_of(q.unacknowledged, n)} resolved without "
            "acknowledgement",
        )
    return Suggestion(
        "none",
        "none: its incidents got attention",
        f"{_of(q.unacknowledged, n)} incidents resolved without acknowledgement; {_of(q.flapping, n)} flapped",
    )


_FUNNEL_FIELDS = tuple(f.name for f in fields(Funnel))


def funnel_of(row: Mapping[str, Any] | None) -> Funnel:
    """A `noise_funnel` row as a Funnel."""
    if row is None:
        return Funnel()
    return Funnel(**{name: int(row[name]) for name in _FUNNEL_FIELDS})


def quality_of(row: Mapping[str, Any]) -> Quality:
    """A `noise_by_alert` or `noise_by_rule` row as a Quality (an alert is named by `alertname`, a rule by `rule`)."""
    by_alert = "alertname" in row
    return Quality(
        name=row["alertname"] if by_alert else row["rule"],
        rule=row["rule"] if by_alert else None,
        notifications=int(row["notifications"]),
        occurrences=int(row["occurrences"]),
        incidents=int(row["incidents"]),
        held_back=int(row["held_back"]),
        unacknowledged=int(row["unacknowledged"]),
        flapping=int(row["flapping"]),
        single_alert=int(row["single_alert"]),
        clustered=int(row["clustered"]),
        hosts=int(row["hosts"]),
        not_resolved=int(row["not_resolved"]),
        median_firing_s=row["median_firing_s"],
    )


def noisiest_of(alerts: list[Quality], top: int = TOP_NOISIEST) -> list[Noisy]:
    """The first `top` of alerts already in noise order (noise_by_alert's), each with its suggestion."""
    return [Noisy(q, suggest(q)) for q in alerts[:top]]


def params(since: datetime, until: datetime, top: int | None = None) -> dict[str, Any]:
    """The queries' parameters: the period, how many rows (None: all), and CLUSTER_WINDOW."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must carry a time zone")
    if until <= since:
        raise ValueError("until must be after since")
    return {"since": since, "until": until, "top": top, "cluster_s": CLUSTER_WINDOW.total_seconds()}


async def read_noisiest(conn: Connection, since: datetime, until: datetime, top: int = TOP_NOISIEST) -> list[Noisy]:
    """The `top` noisiest alerts of [since, until), with suggestions: one aggregate query."""
    cur = await conn.execute(Q.noise_by_alert, params(since, until, top))
    return noisiest_of([quality_of(r) for r in await cur.fetchall()], top)


async def read_noise(conn: Connection, since: datetime, until: datetime, top: int = TOP_NOISIEST) -> Noise:
    """The whole section for [since, until), on the caller's connection (for one snapshot, open a REPEATABLE READ
    transaction around it)."""
    p = params(since, until)
    funnel = await read_funnel(conn, since, until)
    by_alert = [quality_of(r) for r in await (await conn.execute(Q.noise_by_alert, p)).fetchall()]
    by_rule = [quality_of(r) for r in await (await conn.execute(Q.noise_by_rule, p)).fetchall()]
    return Noise(funnel, by_alert, by_rule, noisiest_of(by_alert, top))


async def read_funnel(conn: Connection, since: datetime, until: datetime) -> Funnel:
    return funnel_of(await (await conn.execute(Q.noise_funnel, params(since, until))).fetchone())


def read_funnel_sync(conn: psycopg.Connection[Any], since: datetime, until: datetime) -> Funnel:
    with conn.cursor(row_factory=dict_row) as cur:
        return funnel_of(cur.execute(Q.noise_funnel, params(since, until)).fetchone())


def read_noisiest_sync(
    conn: psycopg.Connection[Any], since: datetime, until: datetime, top: int = TOP_NOISIEST
) -> list[Noisy]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(Q.noise_by_alert, params(since, until, top)).fetchall()
    return noisiest_of([quality_of(r) for r in rows], top)


def read_noise_sync(conn: psycopg.Connection[Any], since: datetime, until: datetime, top: int = TOP_NOISIEST) -> Noise:
    """read_noise on a blocking connection (the audit's, in its snapshot)."""
    p = params(since, until)
    with conn.cursor(row_factory=dict_row) as cur:
        funnel = funnel_of(cur.execute(Q.noise_funnel, p).fetchone())
        by_alert = [quality_of(r) for r in cur.execute(Q.noise_by_alert, p).fetchall()]
        by_rule = [quality_of(r) for r in cur.execute(Q.noise_by_rule, p).fetchall()]
    return Noise(funnel, by_alert, by_rule, noisiest_of(by_alert, top))
