"""Brute-force protection for the login form, as Grafana has it: a user name with too many failed logins in a
window is refused, whatever the password, until the oldest failures age out.

Per name, not per client address: behind a reverse proxy every browser has the proxy's address, and one
attacker would lock everybody out. argon2 already makes each guess slow; this bounds how many there can be.
Attempts live in PostgreSQL (table web_login_attempts) so that every web replica counts the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shared.db import Queries

Q = Queries(Path(__file__).with_name("queries.sql"))
# The first key of the two-key advisory locks that make attempts at one name take turns ("VgLo").
LOCK_CLASS = 0x56674C6F


@dataclass(frozen=True)
class Limit:
    max_failures: int  # 0: no limit
    window_s: int


def retry_after(earlier: Sequence[datetime], now: datetime, limit: Limit) -> int | None:
    """Seconds until a name with these earlier attempts (in the window, oldest first) may try again; None: now.

    With n earlier attempts and a limit of m, n - m + 1 of them must age out to leave fewer than m."""
    if limit.max_failures <= 0 or len(earlier) < limit.max_failures:
        return None
    frees_at = earlier[len(earlier) - limit.max_failures] + timedelta(seconds=limit.window_s)
    return max(1, math.ceil((frees_at - now).total_seconds()))


async def begin(pool: AsyncConnectionPool[Any], username: str, limit: Limit) -> int | None:
    """Count an attempt at `username` unless it is locked; the seconds to wait when it is (None: go ahead).

    The attempt counts as a failure until `succeeded` clears the name's attempts. A refused attempt is not
    counted: otherwise a steady guesser would keep the name locked for good."""
    if limit.max_failures <= 0:
        return None
    params = {"username": username, "window_s": limit.window_s, "lock_class": LOCK_CLASS}
    async with pool.connection() as conn:
        await conn.execute(Q.login_attempts_lock, params)
        seen = await (await conn.execute(Q.login_attempts_earlier, params)).fetchone()
        assert seen is not None
        wait = retry_after(seen["earlier"], seen["now"], limit)
        if wait is None:
            await conn.execute(Q.login_attempt_add, params)
    return wait


async def succeeded(pool: AsyncConnectionPool[Any], username: str, limit: Limit) -> None:
    """A right password wipes the name's failures, as a fresh start for its owner."""
    if limit.max_failures <= 0:
        return
    async with pool.connection() as conn:
        await conn.execute(Q.login_attempts_clear, {"username": username})
