"""Hostile alerts for the `poison` drill: valid Alertmanager JSON with odd contents (huge and many labels, control
characters and odd Unicode, impossible timestamps, fingerprints that are not Alertmanager's), and a few requests that
are broken outright. Deterministic for a seed, so a drill can be run again as it was."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from devstack.alertstorm import alert
from shared.alert_limits import ALERTMANAGER_FINGERPRINT, stable_fingerprint
from shared.fingerprint import label_fingerprint

ODD_CHARACTERS = "\u202e\u200b\ufeff\u0007\u001b[31m\t\r\n🙂é漢<>&\"'\\"

Mutation = Callable[[dict[str, Any], random.Random], None]


def _text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + ODD_CHARACTERS) for _ in range(size))


def _huge_instance(a: dict[str, Any], rng: random.Random) -> None:
    a["labels"]["instance"] = a["labels"]["instance"] + "-" + _text(rng, rng.randint(3_000, 12_000))


def _many_labels(a: dict[str, Any], rng: random.Random) -> None:
    a["labels"].update({f"label_{n:03d}": _text(rng, 20) for n in range(rng.randint(120, 400))})


def _long_names(a: dict[str, Any], rng: random.Random) -> None:
    a["labels"]["n" + _text(rng, 2_000)] = "v"


def _odd_characters(a: dict[str, Any], rng: random.Random) -> None:
    a["labels"]["team"] = ODD_CHARACTERS * 3
    a["annotations"]["summary"] = "<script>alert(1)</script> " + ODD_CHARACTERS


def _ancient_start(a: dict[str, Any], rng: random.Random) -> None:
    a["startsAt"] = "0001-01-01T00:00:00Z"


def _future_start(a: dict[str, Any], rng: random.Random) -> None:
    a["startsAt"] = rng.choice(["9999-12-31T23:59:59.999999Z", "2999-01-01T00:00:00+14:00"])


def _odd_fingerprint(a: dict[str, Any], rng: random.Random) -> None:
    a["fingerprint"] = rng.choice(["not-a-fingerprint", "ABCDEF0123456789", _text(rng, 5_000)])


def _huge_annotation(a: dict[str, Any], rng: random.Random) -> None:
    a["annotations"]["description"] = _text(rng, rng.randint(40_000, 200_000))


def _huge_generator_url(a: dict[str, Any], rng: random.Random) -> None:
    a["generatorURL"] = "http://prometheus:9090/graph?g0.expr=" + "up%7Bjob%3D%22x%22%7D" * 2_000


def _impossible_end(a: dict[str, Any], rng: random.Random) -> None:
    a["status"] = "resolved"
    a["endsAt"] = "9999-12-31T23:59:59Z"


MUTATIONS: tuple[Mutation, ...] = (
    _huge_instance,
    _many_labels,
    _long_names,
    _odd_characters,
    _ancient_start,
    _future_start,
    _odd_fingerprint,
    _huge_annotation,
    _huge_generator_url,
    _impossible_end,
)

# Requests no sender should make: refused with a 4xx naming the field, never stored.
BROKEN = (
    lambda a: a["labels"].__setitem__("alertname", 42),
    lambda a: a.__setitem__("startsAt", "yesterday"),
    lambda a: a.__setitem__("status", "pending"),
    lambda a: a["labels"].__setitem__("team", "nul\x00byte"),
    lambda a: a.__setitem__("startsAt", "2026-01-01T00:00:00"),
)


def odd_alert(n: int, rng: random.Random, starts_at: datetime) -> dict[str, Any]:
    """The n-th odd but valid alert: one mutation (or two) of an ordinary one on its own host."""
    a = alert(f"HostileAlert{n}", f"hostile-{n:03d}", starts_at=starts_at, severity="warning")
    for mutation in rng.sample(MUTATIONS, rng.choice((1, 1, 2))):
        mutation(a, rng)
    return a


def broken_alert(n: int, starts_at: datetime) -> dict[str, Any]:
    a = alert(f"BrokenAlert{n}", f"broken-{n:03d}", starts_at=starts_at)
    BROKEN[n % len(BROKEN)](a)
    return a


def stored_fingerprint(a: dict[str, Any]) -> str:
    """The fingerprint Vigil stores the alert under (see shared/alert_limits.py)."""
    sent = a.get("fingerprint") or ""
    if not sent:
        return label_fingerprint(a["labels"])
    return sent if ALERTMANAGER_FINGERPRINT.fullmatch(sent) else stable_fingerprint(sent)


def hostile_set(count: int, seed: int, t0: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` hostile alerts: about nine in ten odd but valid (to mix into ordinary webhooks), the rest broken (to
    send alone)."""
    rng = random.Random(seed)
    broken = max(1, count // 10)
    odd = [odd_alert(n, rng, t0 + timedelta(seconds=n)) for n in range(count - broken)]
    return odd, [broken_alert(n, t0) for n in range(broken)]
