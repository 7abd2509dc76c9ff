"""Alertmanager's label matchers, one implementation for Vigil: `name="value"`, `name!="value"`, `name=~"re"`,
`name!~"re"`, as the correlation rules, the dashboard's filter and silences write them.

Parsing follows Alertmanager's `labels.ParseMatchers` (pkg/labels/parse.go, the classic parser its config uses):
a comma-separated list, braces optional, a trailing comma allowed; values bare or double-quoted, with OpenMetrics
escapes `\\"`, `\\n` and `\\\\`, and any other backslash kept as it is (so `instance=~"db\\d+"` is the regex
`db\\d+`). Matching follows `labels.Matcher`: a regex is anchored at both ends, `.` does not match a newline unless
the regex says `(?s)`, and an absent label matches as the empty string. tests/shared/test_matchers.py holds
Alertmanager's own test cases.

Regexes run on Python's `re`, which accepts more than Go's RE2: look-arounds and back-references are refused, so a
matcher means the same here as in Alertmanager (and in PostgreSQL, where the dashboard evaluates it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# Alertmanager's classic parser: a Prometheus label name (colons allowed), an operator, the rest.
_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.DOTALL)
# RE2 has no look-arounds, back-references or possessive/atomic groups; Python's re would take them.
_NOT_RE2 = re.compile(r"\(\?(?:=|!|<=|<!|>)|\\[1-9]|\(\?P=|[*+?}][+]")
# A label name that needs no quotes when a matcher is written out.
_PLAIN_NAME = re.compile(r"[^\s{}!=~,\\\"'`]+")
MAX_REGEX = 1000


class MatcherError(ValueError):
    """A matcher that does not parse or compile; the message says what, as Alertmanager's would."""


class MatchType(StrEnum):
    equal = "="
    not_equal = "!="
    regexp = "=~"
    not_regexp = "!~"

    @property
    def is_regex(self) -> bool:
        return self in (MatchType.regexp, MatchType.not_regexp)

    @property
    def is_equal(self) -> bool:
        """True for `=` and `=~` (Alertmanager's `isEqual`)."""
        return self in (MatchType.equal, MatchType.regexp)


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def op(self) -> str:
        return self.type.value

    def matches(self, value: str) -> bool:
        """Whether a label value matches (an absent label is the empty string)."""
        if self.type is MatchType.equal:
            return value == self.value
        if self.type is MatchType.not_equal:
            return value != self.value
        assert self._regex is not None  # set by new_matcher for every regex type
        found = self._regex.fullmatch(value) is not None
        return found if self.type is MatchType.regexp else not found

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        return self.matches(labels.get(self.name, ""))

    def __str__(self) -> str:
        """As Alertmanager writes it: `foo="bar"`, a name quoted only when it must be."""
        name = self.name if _PLAIN_NAME.fullmatch(self.name) else _quote(self.name)
        return f"{name}{self.op}{_quote(self.value)}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def new_matcher(match_type: MatchType | str, name: str, value: str) -> Matcher:
    """A matcher, its regex to be matched anchored as Alertmanager does (`^(?:value)$`)."""
    kind = MatchType(match_type)
    regex = None
    if kind.is_regex:
        if len(value) > MAX_REGEX:
            raise MatcherError(f"regex longer than {MAX_REGEX} characters: {name}")
        if _NOT_RE2.search(value):
            raise MatcherError(f"look-arounds, back-references and possessive quantifiers are not RE2: {value!r}")
        try:
            # fullmatch anchors it as Alertmanager's `^(?:value)$` does, and leaves a leading `(?s)` at the start.
            regex = re.compile(value)
        except re.error as exc:
            raise MatcherError(f"error parsing regexp: {exc}: `{value}`") from None
    return Matcher(name, kind, value, regex)


def parse_matcher(text: str) -> Matcher:
    """One matcher, as Alertmanager's ParseMatcher reads it."""
    found = _MATCHER.match(text)
    if not found:
        raise MatcherError(f"bad matcher format: {text}")
    name, op, raw = found.groups()
    if raw == "":
        raise MatcherError(f"matcher value is not present: {text.strip()}")
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    value: list[str] = []
    escaped = False
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
            if ch == "n":
                value.append("\n")
            elif ch in '"\\':
                value.append(ch)
            else:  # a spurious escape: the backslash is literal
                value.append("\\" + ch)
            continue
        if ch == "\\":
            if i < len(body) - 1:
                escaped = True
                continue
            value.append("\\")  # a backslash as the last character is literal
        elif ch == '"':
            if not quoted or i < len(body) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {raw}")
            quoted = False  # the closing quote
        else:
            value.append(ch)
    if quoted:
        raise MatcherError(f"matcher value contains unescaped double quote: {raw}")
    return new_matcher(op, name, "".join(value))


def parse_matchers(text: str) -> list[Matcher]:
    """A comma-separated list, braces optional, as Alertmanager's ParseMatchers reads it; commas inside quotes (and
    escaped quotes) do not separate."""
    s = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = escaped = False
    for ch in s:
        if ch == "," and not inside_quotes:
            tokens.append("".join(token))
            token = []
            continue
        if ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    if last := "".join(token).strip():
        tokens.append(last)
    return [parse_matcher(t) for t in tokens]


def parse_matcher_list(items: Iterable[str]) -> list[Matcher]:
    """Matchers from a config list, each item one or several (Alertmanager's `matchers:`)."""
    return [m for item in items for m in parse_matchers(item)]


def matchers_of_config(raw: object, *, required: bool = False) -> list[Matcher]:
    """The `matchers:` of a config entry (a rule, a maintenance window): one string or a list of them, each holding
    one or several matchers. An empty string is refused: Alertmanager reads it as no matcher, in a config it is surely
    a slip. With `required`, at least one matcher."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(m, str) for m in items) or (required and not items):
        wanted = "a non-empty list" if required else "a list"
        raise MatcherError(f"expected {wanted} of strings like 'severity=\"critical\"'")
    out: list[Matcher] = []
    for text in items:
        parsed = parse_matchers(text)
        if not parsed:
            raise MatcherError("an empty matcher string")
        out.extend(parsed)
    return out


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches_labels(labels) for m in matchers)
