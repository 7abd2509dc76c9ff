"""Incident signatures, for "similar past incidents": what an incident is made of, as a set of tokens, and how close
two sets are. Pure functions over plain data.

A signature holds tokens of four kinds (migration 0065 stores them, one row each, hashed):
  rule   the correlation rule                          rule:default
  label  each group label                              label:instance=web-1:9100
  alert  each alert name the incident held             alert:HighCpu
  log    each template of its error-burst log lines    log:connection to <ip> refused after <num>ms

The database ranks candidates (shared/readmodel/queries.sql `similar_incidents`) by the weighted Jaccard index of the
two sets, with the weights below passed in as parameters: `similarity` here is that same score, the definition the
query is tested against.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Literal

TokenKind = Literal["rule", "label", "alert", "log"]
Token = tuple[TokenKind, str]

# How much sharing a token of each kind counts. Where it happened (group labels: usually the host or the service)
# says most, what fired (alert names) next; each log template counts one, so an incident's ten templates together
# outweigh neither; the rule is shared by nearly every incident and counts least.
KIND_WEIGHTS: Mapping[TokenKind, int] = {"rule": 1, "label": 3, "alert": 2, "log": 1}
# Templates kept per incident, the most frequent first: a storm of varied lines must not make a huge signature (the
# lookup reads every token of every candidate).
MAX_LOG_TEMPLATES = 10
# A template longer than this is cut: two lines that agree this far are the same kind of line.
MAX_TEMPLATE_CHARS = 300

# Masks, applied in this order: each later pattern sees what the earlier ones left. Every pattern is linear (no
# nested quantifiers), so a hostile 64 KiB line costs microseconds per kilobyte.
_HEX = "[0-9a-fA-F]"
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"\b{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\b"), "<id>"),
    (re.compile(rf"\b{_HEX}{{2}}(?::{_HEX}{{2}}){{5}}\b"), "<id>"),  # a MAC address, before clock times eat it
    # IPv4 (with a port) before IPv6, so "::ffff:192.0.2.1" keeps its IPv4 part whole.
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<ip>"),
    (re.compile(rf"(?<![\w:])(?:{_HEX}{{1,4}}:){{7}}{_HEX}{{1,4}}(?![\w:])"), "<ip>"),
    (
        re.compile(rf"(?<![\w:])(?:{_HEX}{{1,4}}(?::{_HEX}{{1,4}})*)?::(?:{_HEX}{{1,4}}(?::{_HEX}{{1,4}})*)?(?![\w:])"),
        "<ip>",
    ),
    # 2026-11-01T03:00:00.123Z, 2026-11-01 03:00:00,123 +0100, a lone date; then a lone clock time.
    (
        re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:Z|\s?[+-]\d{2}:?\d{2}\b)?"),
        "<time>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(rf"\b0[xX]{_HEX}+\b"), "<id>"),
    # Hex identifiers (commit, trace and container ids): eight or more hex digits, at least one a digit.
    (re.compile(rf"\b(?={_HEX}*\d){_HEX}{{8,}}\b"), "<id>"),
    # Generated names' random parts (pod suffixes x2k4p, request ids a1b2c3): five or more letters and digits, at
    # least two digits, a digit after a letter. "web-17", "http2" and "1500ms" stay a word with a number.
    (re.compile(r"\b(?=[a-zA-Z0-9]*[a-zA-Z]\d)(?=[a-zA-Z]*\d[a-zA-Z]*\d)[a-zA-Z0-9]{5,}\b"), "<id>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<num>"),
)
_SPACES = re.compile(r"\s+")


def log_template(line: str) -> str:
    """The template of a log line: numbers, times, addresses and identifiers replaced by `<num>`, `<time>`, `<ip>` and
    `<id>`, runs of white space made one space, cut to MAX_TEMPLATE_CHARS. Lines that differ only in those values
    have one template."""
    text = line[: MAX_TEMPLATE_CHARS * 4]  # what is past this could not survive the cut below anyway
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return _SPACES.sub(" ", text).strip()[:MAX_TEMPLATE_CHARS]


def log_templates(lines: Iterable[str], limit: int = MAX_LOG_TEMPLATES) -> list[str]:
    """The distinct templates of `lines`, the most frequent first, ties in text order (the same for any order of the
    lines), at most `limit`. A line that masks to nothing leaves no template."""
    counts = Counter(template for line in lines if (template := log_template(line)))
    return sorted(counts, key=lambda t: (-counts[t], t))[:limit]


def incident_tokens(
    rule: str, group_labels: Mapping[str, str], alertnames: Iterable[str], templates: Iterable[str] = ()
) -> set[Token]:
    """An incident's signature, as the correlator (rule, labels, alert names) and the enricher (templates) store it."""
    tokens: set[Token] = {("rule", rule)}
    tokens |= {("label", f"{name}={value}") for name, value in group_labels.items()}
    tokens |= {("alert", name) for name in alertnames}
    tokens |= {("log", template) for template in templates}
    return tokens


def weight(tokens: Iterable[Token]) -> int:
    return sum(KIND_WEIGHTS[kind] for kind, _ in tokens)


def similarity(a: set[Token], b: set[Token]) -> Fraction:
    """The weighted Jaccard index: the weight of the tokens both share over the weight of those either has; 1 for the
    same signature, 0 for nothing in common. Exact (a fraction), as the database's numeric division ranks it."""
    union = weight(a | b)
    return Fraction(weight(a & b), union) if union else Fraction(0)
