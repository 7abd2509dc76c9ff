"""The period audit as one JSON document, written as it is read: every table streams from its cursor into `out` a row
at a time (the incidents, last, are most of it), so memory stays flat however many incidents the period holds.

The document (documented in docs/reports.md, "JSON"): `schema_version`, the period (`since`, `until`, `as_of`,
`retention_horizon`, `complete_from`, `complete`), `summary`, `by_severity`, `response_times` (`by_severity`,
`by_rule`, `targets`, `missed`), `noise` (`funnel`, `noisiest`, `by_alert`, `by_rule`), `by_alertname`, `by_host`,
`noisy`, `flapping`, `still_open`, `incidents`. Times are ISO 8601 in UTC (`2026-11-01T03:00:00Z`), durations are
seconds, shares are fractions (0 to 1, null without incidents). Adding a field keeps `schema_version`; any other
change bumps it.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, BinaryIO

import orjson

from shared.reports.audit import AuditReport, Durations

SCHEMA_VERSION = 1
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):  # a numeric column: a JSON number all the same
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _durations(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "mean_s": d.mean_s, "p90_s": d.p90_s}


class _Writer:
    """Members of the document's objects, written as they come, commas and all."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.first = [True]

    def _sep(self) -> None:
        if not self.first[-1]:
            self.out.write(b",")
        self.first[-1] = False

    def open(self, key: str | None, bracket: bytes) -> None:
        self._sep()
        if key is not None:
            self.out.write(dumps(key) + b":")
        self.out.write(bracket)
        self.first.append(True)

    def close(self, bracket: bytes) -> None:
        self.first.pop()
        self.out.write(bracket)

    def value(self, key: str | None, value: object) -> None:
        self._sep()
        if key is not None:
            self.out.write(dumps(key) + b":")
        self.out.write(dumps(value))

    def array(self, key: str, items: Iterable[object]) -> None:
        self.open(key, b"[")
        for item in items:
            self.value(None, item)
        self.close(b"]")


def _rows(rows: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    return (row._asdict() for row in rows)


def write(audit: AuditReport, out: BinaryIO) -> None:
    """Write the audit of `audit`'s period into `out` (a file or any writable binary stream), a row at a time."""
    a = audit
    w = _Writer(out)
    w.open(None, b"{")
    w.value("schema_version", SCHEMA_VERSION)
    for key, value in (
        ("since", a.since),
        ("until", a.until),
        ("as_of", a.as_of),
        ("retention_horizon", a.retention_horizon),
        ("complete_from", a.complete_from),
        ("complete", a.complete),
    ):
        w.value(key, value)
    w.value(
        "summary",
        {
            "incidents": a.total,
            "still_open": a.still_open_count,
            "maintenance": a.maintenance_count,
            "acknowledged_by_silence": a.acknowledged_by_silence,
            "mtta": _durations(a.mtta),
            "mttr": _durations(a.mttr),
        },
    )
    w.array("by_severity", _rows(a.by_severity))
    w.open("response_times", b"{")
    w.array("by_severity", _rows(a.response_by_severity))
    w.array("by_rule", _rows(a.response_by_rule))
    w.value(
        "targets",
        {s: {"acknowledge_s": t.acknowledge, "resolve_s": t.resolve} for s, t in a.targets.ordered()},
    )
    w.array("missed", (dataclasses.asdict(m) for m in a.missed))
    w.close(b"}")
    w.open("noise", b"{")
    w.value("funnel", a.noise_funnel.as_json())
    w.array("noisiest", (n.as_json() for n in a.noisiest))
    w.array("by_alert", (q.as_json() for q in a.noise_by_alert))
    w.array("by_rule", (q.as_json() for q in a.noise_by_rule))
    w.close(b"}")
    w.array("by_alertname", _rows(a.by_alertname))
    w.array("by_host", _rows(a.by_host))
    w.array("noisy", _rows(a.noisy))
    w.array("flapping", _rows(a.flapping))
    w.array("still_open", _rows(a.still_open))
    w.array("incidents", _rows(a.incidents))
    w.close(b"}")
    out.write(b"\n")


def render(audit: AuditReport) -> bytes:
    """The whole document in memory: for tests and small periods."""
    out = io.BytesIO()
    write(audit, out)
    return out.getvalue()
