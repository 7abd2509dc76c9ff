"""Login sessions stored in PostgreSQL (table web_sessions).

Server-side rows rather than signed cookies: logging out or removing a user takes effect at once on
every replica, and no signing key has to be generated, shared and rotated. The cookie carries a random
token; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from shared.db import Pool, Queries

Q = Queries(Path(__file__).with_name("queries.sql"))
SESSION_TTL_S = 12 * 3600
COOKIE = "vigil_session"


@dataclass(frozen=True)
class Session:
    token: str
    username: str
    method: str
    csrf_token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(pool: Pool, username: str, method: str) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    async with pool.connection() as conn:
        await conn.execute(Q.sessions_expire)
        await conn.execute(
            Q.session_create,
            {
                "token_hash": token_hash(token),
                "username": username,
                "method": method,
                "csrf_token": csrf,
                "ttl_s": SESSION_TTL_S,
            },
        )
    return Session(token, username, method, csrf)


async def find(pool: Pool, token: str) -> Session | None:
    async with pool.connection() as conn:
        row = await (await conn.execute(Q.session_get, {"token_hash": token_hash(token)})).fetchone()
    if row is None:
        return None
    return Session(token, row["username"], row["method"], row["csrf_token"])


async def delete(pool: Pool, token: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(Q.session_delete, {"token_hash": token_hash(token)})
