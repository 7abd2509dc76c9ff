"""Incident signatures (shared/signatures.py): log lines masked into templates, templates ranked, tokens, and the
weighted Jaccard score the database ranks by. Pure: no I/O."""

from __future__ import annotations

import random
import time
from fractions import Fraction

import pytest

from shared.signatures import (
    KIND_WEIGHTS,
    MAX_LOG_TEMPLATES,
    MAX_TEMPLATE_CHARS,
    incident_tokens,
    log_template,
    log_templates,
    similarity,
)


@pytest.mark.parametrize(
    ("line", "template"),
    [
        (
            "2026-11-01T03:00:00.123Z ERROR connection to 10.0.0.12:5432 refused after 1500ms",
            "<time> ERROR connection to <ip> refused after <num>ms",
        ),
        (
            "Nov  1 03:00:01 web-17 sshd[1234]: Failed password for root from 203.0.113.9 port 52211 ssh2",
            "Nov <num> <time> web-<num> sshd[<num>]: Failed password for root from <ip> port <num> ssh<num>",
        ),
        (
            "request 550e8400-e29b-41d4-a716-446655440000 failed: trace=4bf92f3577b34da6a3ce929d0e0e4736",
            "request <id> failed: trace=<id>",
        ),
        ("pod api-5d8f7b9c6-x2k4p crashed, exit code 137", "pod api-<id>-<id> crashed, exit code <num>"),
        ("upstream [2001:db8::1]:443 timed out", "upstream [<ip>]:<num> timed out"),
        ("from fe80::1ff:fe23:4567:890a and ::1", "from <ip> and <ip>"),
        ("link 00:11:22:33:44:55 down", "link <id> down"),
        ("segfault at 0x7ffe12ab in deadbeef", "segfault at <id> in deadbeef"),
        ("2026-11-01 03:00:00,123 +0100 job failed", "<time> job failed"),
        ("std::vector<int> error at 12:30:45.5", "std::vector<int> error at <time>"),
        ("  many \t spaces\n here  ", "many spaces here"),
        ("", ""),
    ],
)
def test_a_log_line_becomes_its_template(line: str, template: str) -> None:
    assert log_template(line) == template


def test_lines_that_differ_only_in_values_share_one_template() -> None:
    lines = [
        f"2026-11-0{day}T0{day}:1{day}:00Z worker-{day} failed job {day * 1234} for 10.1.{day}.{day * 7} "
        f"(request {random.Random(day).getrandbits(128):032x}, took {day}.{day}s)"
        for day in range(1, 9)
    ]
    assert len({log_template(line) for line in lines}) == 1
    assert log_template(lines[0]) == "<time> worker-<num> failed job <num> for <ip> (request <id>, took <num>s)"
    # A different message is a different template.
    assert log_template("2026-11-01T03:00:00Z worker-1 finished job 7") != log_template(lines[0])


def test_templates_are_ranked_by_frequency_then_text_whatever_the_order_of_the_lines() -> None:
    lines = ["disk 1 full"] * 3 + ["b timeout 5"] * 2 + ["a timeout 9"] * 2 + ["   "] + ["once 1"]
    expected = ["disk <num> full", "a timeout <num>", "b timeout <num>", "once <num>"]
    assert log_templates(lines) == expected
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    assert log_templates(shuffled) == expected
    assert log_templates(lines, limit=2) == expected[:2]
    many = [f"kind{chr(97 + i)} happened" for i in range(MAX_LOG_TEMPLATES + 5)]
    assert len(log_templates(many)) == MAX_LOG_TEMPLATES


def test_a_long_line_is_cut_and_a_hostile_one_is_masked_quickly() -> None:
    assert len(log_template("word " * 1000)) == MAX_TEMPLATE_CHARS
    hostile = ["a:" * 40_000, "1" * 80_000, "a1" * 40_000, "ab" * 40_000, "0:" * 40_000, "::" * 40_000, "1." * 40_000]
    started = time.perf_counter()
    for line in hostile:
        log_template(line)
    assert time.perf_counter() - started < 0.5


def test_tokens_of_an_incident() -> None:
    tokens = incident_tokens("default", {"instance": "web-1:9100", "job": "node"}, ["HighCpu", "HighCpu"], ["x <num>"])
    assert tokens == {
        ("rule", "default"),
        ("label", "instance=web-1:9100"),
        ("label", "job=node"),
        ("alert", "HighCpu"),
        ("log", "x <num>"),
    }


def test_similarity_is_the_weighted_jaccard_index() -> None:
    w = KIND_WEIGHTS
    a = incident_tokens("default", {"host": "web-1"}, ["HighCpu"], ["t1", "t2"])
    same_host = incident_tokens("default", {"host": "web-1"}, ["DiskFull"], [])
    assert similarity(a, a) == 1
    assert similarity(a, set()) == 0 and similarity(set(), set()) == 0
    # Shared: rule and host label; either: rule, host, both alerts, two templates.
    assert similarity(a, same_host) == Fraction(w["rule"] + w["label"], w["rule"] + w["label"] + 2 * w["alert"] + 2)
    assert similarity(a, same_host) == similarity(same_host, a)
    # Where it happened weighs more than what fired: the same host with another alert beats the same alert on
    # another host...
    assert similarity(a, incident_tokens("default", {"host": "web-2"}, ["HighCpu"], [])) < similarity(a, same_host)
    # ...but not the same alert on another host with the same error-log templates: the same failure.
    other_host = incident_tokens("default", {"host": "web-2"}, ["HighCpu"], ["t1", "t2"])
    assert similarity(a, same_host) < similarity(a, other_host)
