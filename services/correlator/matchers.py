"""Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`.

Accepted forms, as in Alertmanager's `matchers:` config: one matcher per string, or several separated by
commas, optionally in braces (`{foo="bar", baz=~"a|b"}`). Values may be double-quoted (with `\\"`, `\\\\`
and `\\n` escapes) or bare. Regexes are anchored (`^(?:re)$`) like Alertmanager's, and a label that is
absent matches as the empty string (so `foo=""` matches alerts without `foo`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "=")


class MatcherError(ValueError):
    """A matcher that does not parse; the message says where."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def make_matcher(name: str, op: str, value: str) -> Matcher:
    if op not in _OPERATORS:
        raise MatcherError(f"unknown operator {op!r}")
    if not _NAME.fullmatch(name):
        raise MatcherError(f"invalid label name {name!r}")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(f"(?:{value})", re.DOTALL)
        except re.error as exc:
            raise MatcherError(f"invalid regex {value!r} for {name}: {exc}") from None
    return Matcher(name, op, value, regex)


def parse_matchers(text: str) -> list[Matcher]:
    """One string of matchers (`a="1", b=~"x|y"`, braces optional) → matchers, or MatcherError."""
    s = text.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise MatcherError(f"missing closing brace in {text!r}")
        s = s[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(s):
        pos = _skip_space(s, pos)
        name_match = _NAME.match(s, pos)
        if not name_match:
            raise MatcherError(f"expected a label name at position {pos} in {text!r}")
        name = name_match.group()
        pos = _skip_space(s, name_match.end())
        op = next((o for o in _OPERATORS if s.startswith(o, pos)), None)
        if op is None:
            raise MatcherError(f"expected one of = != =~ !~ after {name!r} in {text!r}")
        pos = _skip_space(s, pos + len(op))
        value, pos = _read_value(s, pos, text)
        matchers.append(make_matcher(name, op, value))
        pos = _skip_space(s, pos)
        if pos < len(s):
            if s[pos] != ",":
                raise MatcherError(f"expected ',' at position {pos} in {text!r}")
            pos += 1
            if not s[pos:].strip():
                break  # a trailing comma is accepted, as Alertmanager does
    if not matchers:
        raise MatcherError(f"no matcher in {text!r}")
    return matchers


def parse_matcher_list(items: Sequence[str]) -> list[Matcher]:
    return [m for item in items for m in parse_matchers(item)]


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _skip_space(s: str, pos: int) -> int:
    while pos < len(s) and s[pos].isspace():
        pos += 1
    return pos


def _read_value(s: str, pos: int, text: str) -> tuple[str, int]:
    if pos < len(s) and s[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(s):
            ch = s[pos]
            if ch == "\\" and pos + 1 < len(s):
                nxt = s[pos + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                pos += 2
                continue
            if ch == '"':
                return "".join(out), pos + 1
            out.append(ch)
            pos += 1
        raise MatcherError(f"unterminated quoted value in {text!r}")
    end = pos
    while end < len(s) and s[end] != ",":
        end += 1
    value = s[pos:end].strip()
    # Unquoted values are for the simple cases; anything odd must be quoted, so typos such as `a=="x"` fail.
    if any(ch in value for ch in '"{}') or value[:1] in ("=", "~", "!"):
        raise MatcherError(f"unquoted value {value!r} in {text!r}: quote it")
    return value, end
