"""The incident list's query: parsing and validating its parameters into plain SQL parameters.

Pure functions over plain data. Every user value ends up as a query parameter, never in the SQL text;
label matchers are Alertmanager's (shared.matchers parses them; `sql_params` turns them into parameters).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from shared.matchers import Matcher, MatcherError, MatchType, new_matcher
from shared.matchers import parse_matchers as parse_alertmanager_matchers

STATES = ("open", "acknowledged", "resolved")
SEVERITIES = ("critical", "error", "warning", "info", "none")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_MATCHERS = 10
MAX_TEXT = 200
MAX_REGEX = 500
# Counts per state are exact up to this many; above, the page says "1000+".
COUNT_CAP = 1_000


class QueryError(ValueError):
    """A parameter the caller can fix: names the field, says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cursor:
    opened_at: datetime
    id: int


@dataclass(frozen=True)
class ListFilter:
    states: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    host: str | None = None
    alertname: str | None = None
    matchers: tuple[Matcher, ...] = ()
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Cursor | None = None
    limit: int = DEFAULT_LIMIT
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_filtered(self) -> bool:
        return bool(
            self.states
            or self.severities
            or self.host
            or self.alertname
            or self.matchers
            or self.text
            or self.since
            or self.until
        )


def parse_matchers(text: str) -> list[Matcher]:
    """The matchers of one `matcher` parameter (one, or several as `{a="x",b=~"y"}`), as Alertmanager reads them."""
    try:
        found = parse_alertmanager_matchers(text)
    except MatcherError as exc:
        raise QueryError("matcher", str(exc)) from None
    for matcher in found:
        # PostgreSQL runs each regex against every candidate alert: a cost bound of the web's own.
        if matcher.type.is_regex and len(matcher.value) > MAX_REGEX:
            raise QueryError("matcher", f"regex longer than {MAX_REGEX} characters")
    return found


def parse_matcher(text: str) -> Matcher:
    found = parse_matchers(text)
    if len(found) != 1:
        raise QueryError("matcher", f"expected one matcher: {text!r}")
    return found[0]


def parse_time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise QueryError(name, "expected an ISO 8601 time, e.g. 2026-11-01T03:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encode_cursor(cursor: Cursor) -> str:
    raw = f"{cursor.opened_at.astimezone(UTC).isoformat()}|{cursor.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at, _, ident = raw.partition("|")
        return Cursor(datetime.fromisoformat(at), int(ident))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError("cursor", "not a cursor this server returned") from None


def _choices(name: str, values: list[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip().lower() for part in values for v in part.split(",") if v.strip()))
    for value in chosen:
        if value not in allowed:
            raise QueryError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return chosen


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = [v for v in params.get(name, []) if v.strip()]
    if len(values) > 1:
        raise QueryError(name, "given more than once")
    return values[0].strip() if values else None


def parse_list_query(params: Mapping[str, list[str]]) -> ListFilter:
    """Validate the list's query parameters (each name maps to every value given for it)."""
    states = _choices("state", params.get("state", []), STATES)
    severities = _choices("severity", params.get("severity", []), SEVERITIES)
    host = _single(params, "host")
    alertname = _single(params, "alertname")
    text = _single(params, "q")
    if text is not None and len(text) > MAX_TEXT:
        raise QueryError("q", f"longer than {MAX_TEXT} characters")
    matcher_texts = [m for m in params.get("matcher", []) if m.strip()]
    if len(matcher_texts) > MAX_MATCHERS:
        raise QueryError("matcher", f"at most {MAX_MATCHERS} matchers")
    label_matchers = tuple(m for text in matcher_texts for m in parse_matchers(text))
    if len(label_matchers) > MAX_MATCHERS:
        raise QueryError("matcher", f"at most {MAX_MATCHERS} matchers")
    since_text, until_text = _single(params, "since"), _single(params, "until")
    since = parse_time("since", since_text) if since_text else None
    until = parse_time("until", until_text) if until_text else None
    if since and until and since >= until:
        raise QueryError("until", "must be after since")
    cursor_text = _single(params, "cursor")
    cursor = decode_cursor(cursor_text) if cursor_text else None
    limit_text = _single(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        try:
            limit = int(limit_text)
        except ValueError:
            raise QueryError("limit", "expected a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}")
    raw = {k: ",".join(v) for k, v in params.items() if k in _KNOWN and k not in ("cursor", "matcher")}
    return ListFilter(states, severities, host, alertname, label_matchers, text, since, until, cursor, limit, raw)


_KNOWN = {"state", "severity", "host", "alertname", "q", "matcher", "since", "until", "cursor", "limit"}


def unknown_params(params: Mapping[str, list[str]]) -> list[str]:
    return sorted(set(params) - _KNOWN)


def sql_params(f: ListFilter, *, with_cursor: bool = True) -> dict[str, Any]:
    """Parameters of `list_incidents`/`count_by_state` in queries.sql; None means "no such filter"."""
    wanted = list(f.matchers)
    if f.alertname:
        wanted.append(new_matcher(MatchType.equal, "alertname", f.alertname))
    # `name="value"` with a value is exactly JSONB containment, which an index answers; `name=""` also
    # matches alerts without the label, so it stays with the other operators.
    equal = {m.name: m.value for m in wanted if m.type is MatchType.equal and m.value}
    conflicting = any(m.type is MatchType.equal and m.value and equal[m.name] != m.value for m in wanted)
    rest = [m for m in wanted if not (m.type is MatchType.equal and m.value)] + (
        [m for m in wanted if m.type is MatchType.equal and m.value] if conflicting else []
    )
    text_pattern = None
    if f.text:
        # The text is matched literally: LIKE's wildcards in it are escaped.
        text_pattern = "%" + re.sub(r"([\\%_])", r"\\\1", f.text) + "%"
    cursor = f.cursor if with_cursor else None
    return {
        "states": list(f.states) or None,
        "severities": list(f.severities) or None,
        "host": f.host,
        "text": text_pattern,
        "since": f.since,
        "until": f.until,
        "has_matchers": bool(wanted),
        "label_eq": Jsonb(equal) if equal else None,
        "m_names": [m.name for m in rest],
        # queries.sql's CASE knows Alertmanager's four operators by their text.
        "m_ops": [m.op for m in rest],
        "m_values": [m.value for m in rest],
        "cursor_at": cursor.opened_at if cursor else None,
        "cursor_id": cursor.id if cursor else None,
        # One row more than asked tells whether there is a next page.
        "limit": f.limit + 1,
        "count_cap": COUNT_CAP + 1,
    }


def query_string(f: ListFilter, **changes: str | None) -> str:
    """The list's URL query for these filters with some values changed (None drops a parameter)."""
    from urllib.parse import urlencode

    pairs: list[tuple[str, str]] = [(k, v) for k, v in f.raw.items() if k not in changes and k != "limit"]
    pairs += [("matcher", str(m)) for m in f.matchers if "matcher" not in changes]
    pairs += [(k, v) for k, v in changes.items() if v is not None]
    return urlencode(pairs)
