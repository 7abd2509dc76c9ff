"""PostgreSQL plumbing: the connection pool, ordered SQL migrations, and named queries from .sql files."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica of every service.
MIGRATION_LOCK_ID = 0x76696769  # "vigi"

# Every jsonb value in and out of PostgreSQL (alerts' labels and annotations, incident events, enrichments) goes
# through orjson: the json module's speed showed in the correlator's profile. Same JSON, datetimes as RFC 3339.
set_json_loads(orjson.loads)
set_json_dumps(orjson.dumps)


async def open_pool(url: str, *, max_size: int = 10, min_size: int = 1) -> AsyncConnectionPool:
    """An open pool whose connections return rows as dicts; waits until the first connection works."""
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": False},
        open=False,
        name="vigil",
        # A dead server must surface as an error within seconds, not a hang.
        timeout=10,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def list_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """`NNNN_name.sql` files, in the order of their number."""
    found = []
    for path in directory.glob("*.sql"):
        if not re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", path.name):
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(path.stem, path))
    return sorted(found, key=lambda m: m.version)


class MigrationError(RuntimeError):
    pass


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the versions applied.

    A session-level advisory lock serialises replicas starting together: the second waits, then
    finds nothing left to do. An applied migration whose file changed is an error, not a silent skip.
    """
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version text PRIMARY KEY,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            done = {version: checksum for version, checksum in await cur.fetchall()}
            for migration in list_migrations(directory):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version} changed after it was applied; "
                            "add a new migration instead of editing an old one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)  # type: ignore[arg-type]
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
                log.info("migration applied", extra={"migration": migration.version})
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


class Queries:
    """Named SQL from a file of `-- name: some_query` blocks, read once at import.

    Keeping SQL in .sql files lets it be read, reviewed and explained on its own; values are always
    passed as parameters, never formatted into the text.
    """

    def __init__(self, path: Path) -> None:
        self._by_name: dict[str, str] = {}
        name: str | None = None
        lines: list[str] = []
        for line in path.read_text().splitlines():
            match = re.match(r"--\s*name:\s*(\w+)\s*$", line)
            if match:
                if name:
                    self._by_name[name] = "\n".join(lines).strip()
                name, lines = match.group(1), []
            elif name is not None:
                lines.append(line)
        if name:
            self._by_name[name] = "\n".join(lines).strip()
        if not self._by_name:
            raise ValueError(f"no `-- name:` queries in {path}")

    def __getattr__(self, name: str) -> str:
        try:
            return self._by_name[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._by_name)
