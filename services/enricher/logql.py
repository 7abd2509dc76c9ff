"""LogQL built from untrusted values: stream selectors and line filters.

LogQL string literals are unquoted with Go's rules, exactly like PromQL's, so the same escaping applies;
label regexes are anchored RE2 like Prometheus's. Templates follow the same rule: a `{{variable}}` may only
sit inside a double-quoted literal (checked when the config loads).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.enricher.promql import check_template, escape_string, quote_string, render

__all__ = ["check_template", "escape_string", "line_filter", "render", "stream_selector"]

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def stream_selector(matchers: Iterable[tuple[str, str, str]]) -> str:
    """`{label op "value", ...}` from (label, op, value) triples; values escaped, names and ops checked."""
    parts = []
    for label, op, value in matchers:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"not a label name: {label!r}")
        if op not in {"=", "!=", "=~", "!~"}:
            raise ValueError(f"not a matcher operator: {op!r}")
        parts.append(f"{label}{op}{quote_string(value)}")
    if not parts:
        raise ValueError("a stream selector needs at least one matcher")
    return "{" + ", ".join(parts) + "}"


def line_filter(op: str, value: str) -> str:
    """A line filter expression, e.g. `|= "203.0.113.7"`."""
    if op not in {"|=", "!=", "|~", "!~"}:
        raise ValueError(f"not a line filter operator: {op!r}")
    return f"{op} {quote_string(value)}"
