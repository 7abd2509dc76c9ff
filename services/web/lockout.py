"""Brute-force protection for the login form, as Grafana has it, counted two ways: a user name with too many failed
logins in a window is refused, whatever the password, until the oldest failures age out; and so is a client
address with too many (across all the names it tried), which stops one source from guessing through many names.

The per-name count cannot be dodged by changing address; the per-address count needs the real client address, so
behind a reverse proxy `VIGIL_WEB_TRUSTED_PROXIES` must name the proxy (gate.client_of reads X-Forwarded-For only
from there), or every browser would share the proxy's address and one guesser would lock everybody out.
argon2 already makes each guess slow; this bounds how many there can be. Attempts live in PostgreSQL (table
web_login_attempts) so that every web replica counts the same ones.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from shared.db import Pool, Queries

Q = Queries(Path(__file__).with_name("queries.sql"))
# The first keys of the two-key advisory locks that make attempts at one name ("VgLo"), and from one address
# ("VgLa"), take turns.
LOCK_CLASS = 0x56674C6F
ADDRESS_LOCK_CLASS = 0x56674C61
# An IPv6 client usually has a whole /64 to itself (one subscriber's prefix): counting per /128 would give it
# 2**64 fresh addresses.
IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class Limit:
    max_failures: int  # 0: no limit
    window_s: int


class Scope(StrEnum):
    name = "name"
    address = "address"


@dataclass(frozen=True)
class Refusal:
    scope: Scope  # which count refused the attempt (the later to free up, when both do)
    retry_after_s: int


def address_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What attempts from `address` are counted under: the address itself, or an IPv6 address's /64."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def retry_after(earlier: Sequence[datetime], now: datetime, limit: Limit) -> int | None:
    """Seconds until a name with these earlier attempts (in the window, oldest first) may try again; None: now.

    With n earlier attempts and a limit of m, n - m + 1 of them must age out to leave fewer than m."""
    if limit.max_failures <= 0 or len(earlier) < limit.max_failures:
        return None
    frees_at = earlier[len(earlier) - limit.max_failures] + timedelta(seconds=limit.window_s)
    return max(1, math.ceil((frees_at - now).total_seconds()))


def refusal(
    by_name: Sequence[datetime],
    by_address: Sequence[datetime],
    now: datetime,
    name_limit: Limit,
    address_limit: Limit,
) -> Refusal | None:
    """Whether an attempt with these earlier ones at its name and from its address is refused, and for how long."""
    waits = [
        Refusal(scope, wait)
        for scope, wait in (
            (Scope.name, retry_after(by_name, now, name_limit)),
            (Scope.address, retry_after(by_address, now, address_limit)),
        )
        if wait is not None
    ]
    return max(waits, key=lambda r: r.retry_after_s, default=None)


NO_LIMIT = Limit(max_failures=0, window_s=1)


async def begin(
    pool: Pool,
    username: str,
    limit: Limit,
    *,
    address: str | None = None,
    address_limit: Limit = NO_LIMIT,
) -> Refusal | None:
    """Count an attempt at `username` from `address` (an `address_key`) unless either is locked; the refusal when
    one is (None: go ahead). Without an address the attempt is counted by name only.

    The attempt counts as a failure until `succeeded` clears the name's attempts. A refused attempt is not
    counted: otherwise a steady guesser would keep the name locked for good."""
    by_address = address is not None and address_limit.max_failures > 0
    if limit.max_failures <= 0 and not by_address:
        return None
    params = {
        "username": username,
        "address": address,
        "name_window_s": limit.window_s,
        "address_window_s": address_limit.window_s,
        # Attempts older than every window count for nothing: the add deletes them, keeping the table small.
        "window_s": max(limit.window_s, address_limit.window_s if by_address else 0),
        "lock_class": LOCK_CLASS,
        "address_lock_class": ADDRESS_LOCK_CLASS,
    }
    async with pool.connection() as conn:
        # Name first, then address, in every attempt: two attempts never wait for each other's second lock.
        await conn.execute(Q.login_attempts_lock, params)
        if by_address:
            await conn.execute(Q.login_address_lock, params)
        seen = await (await conn.execute(Q.login_attempts_seen, params)).fetchone()
        assert seen is not None
        decided = refusal(seen["by_name"], seen["by_address"] if by_address else [], seen["now"], limit, address_limit)
        if decided is None:
            await conn.execute(Q.login_attempt_add, params)
    return decided


async def succeeded(pool: Pool, username: str) -> None:
    """A right password wipes the name's failures, as a fresh start for its owner (and they no longer count
    against the addresses they came from either)."""
    async with pool.connection() as conn:
        await conn.execute(Q.login_attempts_clear, {"username": username})
