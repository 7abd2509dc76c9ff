"""PromQL built from untrusted values: string-literal escaping, regex quoting, and template rendering.

Label values from alerts (hosts, jobs, instances) reach queries only as the *content* of a double-quoted
string literal, escaped the way Prometheus unquotes it (Go string-literal rules), so no value can close
the literal and add selectors or operators. Templates come from the operator's config file; a template
that puts a `{{variable}}` anywhere but inside a double-quoted literal is refused at load time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import SplitResult, parse_qs, urlsplit

# Go's regexp.QuoteMeta set: the characters RE2 gives a meaning to.
_REGEX_META = frozenset(r"\.+*?()|[]{}^$")
_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
MAX_ALERT_EXPR_CHARS = 4096


class TemplateError(ValueError):
    """A query template that could let a substituted value escape its string literal, or names an unknown variable."""


def escape_string(value: str) -> str:
    """`value` as the content of a double-quoted PromQL/LogQL string literal (Go escaping rules)."""
    out = []
    for ch in value:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            # A lone surrogate cannot be encoded as UTF-8; Prometheus would reject the whole query.
            out.append("\\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def quote_string(value: str) -> str:
    return f'"{escape_string(value)}"'


def quote_meta(value: str) -> str:
    """A regex matching exactly `value` (Go's regexp.QuoteMeta)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def alternation(values: Iterable[str], *, optional_port: bool = False) -> str | None:
    """A regex matching any of `values` exactly (Prometheus and Loki anchor label regexes); None if none."""
    distinct = sorted({v for v in values if v})
    if not distinct:
        return None
    regex = "(?:" + "|".join(quote_meta(v) for v in distinct) + ")"
    if optional_port:
        regex += "(?::[0-9]+)?"
    return regex


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def check_template(template: str, known: Iterable[str]) -> None:
    """Refuse a template whose variables are unknown or not wholly inside a double-quoted string literal."""
    known_set = set(known)
    for name in placeholders(template):
        if name not in known_set:
            raise TemplateError(f"unknown variable {{{{{name}}}}} (known: {', '.join(sorted(known_set))})")
    inside = _double_quoted_spans(template)
    for match in _PLACEHOLDER.finditer(template):
        if not any(start <= match.start() and match.end() <= end for start, end in inside):
            raise TemplateError(f'{match.group(0)} must sit inside a double-quoted string, e.g. label=~"{{{{...}}}}"')


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute each `{{name}}` with its escaped value; the template must have passed `check_template`."""
    check_template(template, values)
    return _PLACEHOLDER.sub(lambda m: escape_string(values[m.group(1)]), template)


def _double_quoted_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every double-quoted literal, skipping single-quoted and raw strings."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":  # PromQL comment to end of line (LogQL has none, and '#' outside strings is invalid there)
            while i < n and text[i] != "\n":
                i += 1
        elif ch in "\"'":
            start = i + 1
            i += 1
            while i < n and text[i] != ch:
                i += 2 if text[i] == "\\" else 1
            if ch == '"':
                spans.append((start, min(i, n)))
        elif ch == "`":
            i = text.find("`", i + 1)
            if i < 0:
                break
        i += 1
    return spans


def selector_matcher(label: str, op: str, value: str) -> str:
    """One matcher, e.g. `instance=~"..."`; the label name must be a plain identifier."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
        raise ValueError(f"not a label name: {label!r}")
    if op not in {"=", "!=", "=~", "!~"}:
        raise ValueError(f"not a matcher operator: {op!r}")
    return f"{label}{op}{quote_string(value)}"


def alert_expression(generator_url: str) -> str | None:
    """The PromQL expression of an alert from its Prometheus `generatorURL` (`/graph?g0.expr=...`)."""
    if not generator_url:
        return None
    try:
        query = urlsplit(generator_url).query
    except ValueError:
        return None
    exprs = parse_qs(query).get("g0.expr")
    if not exprs:
        return None
    expr = exprs[0].strip()
    if not expr or len(expr) > MAX_ALERT_EXPR_CHARS:
        return None
    return expr


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(parts: SplitResult, port: int) -> str:
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_host(url: str) -> str | None:
    """`host:port` of an http(s) URL, lower-cased, its scheme's default port filled in (`http://Prom/graph` →
    `prom:80`); None for a URL without a host, of another scheme, or with a port that is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return _host_port(parts, _DEFAULT_PORTS[scheme] if port is None else port)


def trusted_hosts(prometheus_url: str, allowed: Iterable[str]) -> frozenset[str]:
    """The `host:port`s whose alert expressions may be run: the configured Prometheus's, and each `host[:port]`
    (or URL) of the allow-list. An entry without a port stands for both default ports, http's and https's, as a
    generatorURL without a port means one of them. Raises ValueError naming an entry that is no host[:port]."""
    hosts = {host} if (host := url_host(prometheus_url)) else set()
    for entry in allowed:
        if "://" in entry:
            if (host := url_host(entry)) is None:
                raise ValueError(f"not an http(s) URL with a host: {entry!r}")
            hosts.add(host)
            continue
        try:
            parts = urlsplit(f"//{entry.strip()}")
            port = parts.port
        except ValueError:
            raise ValueError(f"not a host[:port]: {entry!r}") from None
        if not parts.hostname or parts.path or parts.query or parts.fragment or parts.username is not None:
            raise ValueError(f"not a host[:port]: {entry!r}")
        hosts.update(_host_port(parts, p) for p in ([port] if port is not None else _DEFAULT_PORTS.values()))
    return frozenset(hosts)


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:Inf|NaN)", re.IGNORECASE)
_TWO_CHAR_COMPARISONS = frozenset({"==", "!=", ">=", "<="})


def without_threshold(expr: str) -> str:
    """`expr` minus a trailing top-level comparison with a number (`... > 90` becomes `...`).

    An alert's expression filters to the moments it fires; the quantity it compares is what shows how the
    incident built up. Anything but `<expression> <op> [bool] <number>` at the top level is kept whole.
    """
    depth, skip = 0, -1
    last: tuple[int, int] | None = None
    try:
        for i, ch in _code(expr):
            if i <= skip:  # the second character of a two-character comparison
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == "#":
                return expr
            elif depth == 0:
                if expr[i : i + 2] in _TWO_CHAR_COMPARISONS:
                    last, skip = (i, i + 2), i + 1
                elif ch in "<>":
                    last = (i, i + 1)
    except _Unterminated:
        return expr  # what follows an open literal is no number: nothing to strip
    if last is None:
        return expr
    left, right = expr[: last[0]].strip(), expr[last[1] :].strip()
    if right.startswith("bool"):
        right = right[4:].strip()
    if left and _NUMBER.fullmatch(right):
        return left
    return expr


# --- every raw sample ----------------------------------------------------------------------------
# query_range evaluates an expression at one instant per step, so a spike shorter than the step is in no answer.
# The extremes come instead from *_over_time over each step and over the whole window. For a bare vector selector
# that is a range selector over the raw samples themselves; any other expression (rate(), sums, arithmetic) has no
# raw samples, only values at evaluation instants, so it goes through a subquery evaluated every `resolution`:
# exact when the resolution is no coarser than the scrape interval (each sample is the newest at some instant).

MAX_SUBQUERY_POINTS = 11_000  # Prometheus's own cap on a range query's points; a subquery gets no more per range.
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:,=!~ \t\n\r")


def prometheus_duration(value: timedelta) -> str:
    """`value` as Prometheus parses a duration: whole seconds or milliseconds (`5s`, `300ms`; never `0.3s`)."""
    ms = max(round(value / timedelta(milliseconds=1)), 1)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def is_vector_selector(expr: str) -> bool:
    """`metric`, `metric{label="..."}` or `{__name__="..."}`: nothing but a selector, no modifier or operator."""
    text = expr.strip()
    name = _IDENTIFIER.match(text)
    rest = text[name.end() :].lstrip() if name else text
    if name and _NUMBER.fullmatch(name.group(0)):
        return False  # NaN, Inf: numbers, not metric names
    if not rest:
        return name is not None
    if not rest.startswith("{"):
        return False
    i, n = 1, len(rest)
    while i < n:
        ch = rest[i]
        if ch in "\"'`":
            close = rest.find("`", i + 1) if ch == "`" else _string_end(rest, i)
            if close < 0:
                return False
            i = close
        elif ch == "}":
            return not rest[i + 1 :].strip()
        elif ch not in _MATCHER_CHARS:
            return False
        i += 1
    return False


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the literal opened at `start`; -1 if it never closes."""
    quote, i, n = text[start], start + 1, len(text)
    while i < n and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i if i < n else -1


def is_balanced(expr: str) -> bool:
    """Brackets balance outside strings and comments, so `(expr)` wraps all of `expr` and only it."""
    depth = 0
    try:
        for _, ch in _code(expr):
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth < 0:
                    return False
    except _Unterminated:
        return False
    return depth == 0


class _Unterminated(ValueError):
    """A string literal or backtick string that never closes."""


def _code(expr: str) -> Iterator[tuple[int, str]]:
    """(index, character) of `expr` outside its string literals and comments: the one scan `without_threshold` and
    `is_balanced` read an expression with. A comment's `#` is yielded, the rest of its line is not; a literal that
    never closes raises _Unterminated."""
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in "\"'`":
            close = expr.find("`", i + 1) if ch == "`" else _string_end(expr, i)
            if close < 0:
                raise _Unterminated(expr[i:])
            i = close + 1
            continue
        yield i, ch
        if ch == "#":
            newline = expr.find("\n", i)
            i = n if newline < 0 else newline
        i += 1


def over_time(func: str, expr: str, span: timedelta, resolution: timedelta) -> str:
    """`func` (max_over_time, ...) of `expr` over `span` ending at each evaluation instant: a range selector for a
    bare selector, else a subquery at `resolution`. `expr` must be balanced (see `is_balanced`)."""
    if func not in {"max_over_time", "min_over_time", "avg_over_time"}:
        raise ValueError(f"not an aggregation over time: {func!r}")
    if is_vector_selector(expr):
        return f"{func}({expr.strip()}[{prometheus_duration(span)}])"
    # A bounded number of evaluations per range, whatever the window: the resolution coarsens, the query stays cheap.
    step = min(max(resolution, span / MAX_SUBQUERY_POINTS), span)
    # The newline ends a trailing `# comment` of the expression before it could swallow the closing bracket.
    return f"{func}((\n{expr}\n)[{prometheus_duration(span)}:{prometheus_duration(step)}])"


@dataclass(frozen=True)
class ExtremeQueries:
    """Per step (query_range at the window's step): `step_min`, `step_max`; over the window (an instant query at its
    end): `min`, `max`, `avg`."""

    step_min: str
    step_max: str
    min: str
    max: str
    avg: str


def extreme_queries(expr: str, *, step: timedelta, window: timedelta, resolution: timedelta) -> ExtremeQueries | None:
    """None for an expression whose brackets do not balance: wrapped, it could mean something else entirely."""
    if not is_balanced(expr):
        return None
    return ExtremeQueries(
        step_min=over_time("min_over_time", expr, step, resolution),
        step_max=over_time("max_over_time", expr, step, resolution),
        min=over_time("min_over_time", expr, window, resolution),
        max=over_time("max_over_time", expr, window, resolution),
        avg=over_time("avg_over_time", expr, window, resolution),
    )
