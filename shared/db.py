"""PostgreSQL plumbing: the connection pool, telling an outage from a refused statement, ordered SQL migrations,
and named queries from .sql files."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import select
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import Diagnostic
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica of every service.
MIGRATION_LOCK_ID = 0x76696769  # "vigi"

# Every jsonb value in and out of PostgreSQL (alerts' labels and annotations, incident events, enrichments) goes
# through orjson: the json module's speed showed in the correlator's profile. Same JSON, datetimes as RFC 3339.
set_json_loads(orjson.loads)
set_json_dumps(orjson.dumps)


# A session setting rather than the connection's `options` parameter, which would replace any `options` the URL
# carries; set_config takes the value as a parameter.
SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"
# Times come back in UTC whatever the server's TimeZone: the read model's alerts are not revalidated to UTC, and
# what Vigil shows and writes into reports says +00:00.
SET_TIME_ZONE_UTC = "SELECT set_config('TimeZone', 'UTC', false)"
# For a transaction that aggregates a whole period (an audit, the insights page): PostgreSQL's estimates of such
# queries overshoot by orders of magnitude, and past jit_above_cost it compiled them to machine code for longer than
# they then ran (a year of 110,000 alerts' noise figures: 1.7 s with JIT, 0.65 s without).
SET_LOCAL_NO_JIT = "SET LOCAL jit = off"


# What every pool of Vigil's hands out: connections whose rows are dicts keyed by column name.
Connection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Connection]


async def open_pool(
    url: str,
    *,
    max_size: int = 10,
    min_size: int = 1,
    statement_timeout_ms: int | None = None,
    writable: bool = True,
) -> Pool:
    """An open pool whose connections return rows as dicts; waits until the first connection works.

    With `statement_timeout_ms`, PostgreSQL cancels any statement of the pool's connections that runs longer
    (SQLSTATE 57014, psycopg.errors.QueryCanceled): a reader serving people gives up instead of piling up.
    `writable`: each connection is checked to take writes before it is handed out (`check_writable`); a pool that
    only reads (from a standby) checks only that the server answers.
    """

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(SET_TIME_ZONE_UTC)
        if statement_timeout_ms is not None:
            await conn.execute(SET_STATEMENT_TIMEOUT, (f"{statement_timeout_ms}ms",))
        await conn.commit()

    pool = AsyncConnectionPool(
        url,
        connection_class=Connection,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row, "autocommit": False},
        configure=configure,
        open=False,
        name="vigil",
        # A dead server must surface as an error within seconds, not a hang.
        timeout=10,
        check=check_writable if writable else AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


# How long a connection that was found to take writes is handed out again without asking the server once more.
WRITABLE_CHECK_EVERY_S = 1.0
_checked_writable_at: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()


async def check_writable(conn: Connection) -> None:
    """Before a pooled connection is handed out: the server is still there and takes writes. The server is asked
    (one round trip) when it sent something while the connection sat in the pool (a backend terminated by a
    crash or a shutdown says so, then closes), and otherwise at most every WRITABLE_CHECK_EVERY_S per connection:
    asking at every checkout was the enricher's busiest statement in a storm. One that became read-only (a primary
    demoted to a standby, or `default_transaction_read_only` turned on) raises, so the pool drops the connection
    and makes another, which a multi-host URL with `target_session_attrs=read-write` takes to the primary. A write
    refused in the moment before the next check is an outage (SQLSTATE 25006): the work is held and retried."""
    now = time.monotonic()
    # poll(), not select(): select() takes no descriptor past 1,023, and a process may hold more sockets than that.
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    spoke = bool(poller.poll(0))
    if not spoke and now - _checked_writable_at.get(conn, float("-inf")) < WRITABLE_CHECK_EVERY_S:
        return
    await conn.set_autocommit(True)
    try:
        row = await (await conn.execute("SHOW transaction_read_only")).fetchone()
    finally:
        with contextlib.suppress(psycopg.Error):
            await conn.set_autocommit(False)
    if row is None or row["transaction_read_only"] != "off":
        raise psycopg.OperationalError("the server takes no writes (transaction_read_only is on): a standby now")
    _checked_writable_at[conn] = now


def connect_sync(url: str, *, statement_timeout_ms: int) -> psycopg.Connection[Any]:
    """A blocking connection for work done in a thread of its own (an audit export), with its statement_timeout."""
    conn = psycopg.connect(url, connect_timeout=10)
    try:
        conn.execute(SET_TIME_ZONE_UTC)
        conn.execute(SET_STATEMENT_TIMEOUT, (f"{statement_timeout_ms}ms",))
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


# PostgreSQL errors that say the server is unreachable, going away or out of resources: not the message's fault.
# Anything else the server says is about the statement, hence about the messages that led to it.
OUTAGE_SQLSTATE_CLASSES = ("08", "53")  # connection exception, insufficient resources
# Admin shutdown, crash shutdown, cannot connect now; and a write refused by a server that takes none (a standby, or a
# primary being demoted in a failover): the next connection goes to the primary, the work is not at fault.
OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03", "25006"}


def is_database_outage(exc: BaseException) -> bool:
    """PostgreSQL unreachable, going away or out of resources, rather than refusing what it was asked: told by the
    SQLSTATE and not by psycopg's exception class (which calls an index row too large, a statement timeout and a
    lost connection all `OperationalError`). What a consumer lane is given to hold a batch through an outage."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.errors.PipelineAborted):
        return False  # PipelineAborted follows an earlier error of the same work
    state = exc.sqlstate
    if state is None:
        # Raised by psycopg itself, not the server: the connection broke or could not be made, or a value could not
        # be converted (a DataError: the message's).
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in OUTAGE_SQLSTATE_CLASSES or state in OUTAGE_SQLSTATES


def user_of(url: str) -> str:
    """The role a connection URL logs in as, for logs (never the password)."""
    return str(conninfo_to_dict(url).get("user") or "(the operating system user)")


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


def _log_notice(diag: Diagnostic) -> None:
    # A migration's WARNING (a role it found rather than made, say) is for the operator: log it as one.
    level = logging.WARNING if diag.severity_nonlocalized == "WARNING" else logging.INFO
    log.log(level, "migration: %s", diag.message_primary, extra={"detail": diag.message_detail or ""})


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the versions applied.

    A session-level advisory lock serialises replicas starting together: the second waits, then
    finds nothing left to do. An applied migration whose file changed is an error, not a silent skip.
    """
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(_log_notice)
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
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                            (migration.version, migration.checksum),
                        )
                except psycopg.DatabaseError as exc:
                    # The server's own words and hint (a missing privilege names what to grant), with the file.
                    said = exc.diag.message_primary or str(exc)
                    hint = f" ({exc.diag.message_hint})" if exc.diag.message_hint else ""
                    raise MigrationError(
                        f"migration {migration.version} failed as {user_of(url)}: {said}{hint}"
                    ) from exc
                log.info("migration applied", extra={"migration": migration.version})
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


async def wait_for_schema(url: str, *, timeout_s: float, directory: Path = MIGRATIONS_DIR) -> None:
    """Wait until every migration this code knows is applied, for a process that does not apply them itself: one
    connected as a role that may only read the schema (the web's). The services that own the schema migrate it at
    their start. Whatever stands in the way (no schema yet, no server, a login refused) is logged every ten seconds,
    and raised as MigrationError after `timeout_s`."""
    wanted = {m.version for m in list_migrations(directory)}
    deadline = time.monotonic() + timeout_s
    next_log = time.monotonic()
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
                cur = await conn.execute("SELECT version FROM schema_migrations")
                missing = sorted(wanted - {row[0] for row in await cur.fetchall()})
            reason = f"migrations not applied yet: {', '.join(missing)}"
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            # No schema at all yet, or one from before the migration that grants this role its reads.
            missing, reason = sorted(wanted), "the schema is not there yet"
        except psycopg.OperationalError as exc:
            # Unreachable, starting, or refusing this login (not made yet, as while a new volume is initialised).
            missing, reason = sorted(wanted), f"cannot connect: {exc}"
        if not missing:
            return
        now = time.monotonic()
        if now >= deadline:
            raise MigrationError(
                f"gave up after {timeout_s:.0f}s waiting for the schema as {user_of(url)}: {reason}; "
                "a service connected as the schema's owner (VIGIL_DATABASE_URL) applies the migrations at its start"
            )
        if now >= next_log:
            log.warning("waiting for the schema", extra={"user": user_of(url), "reason": reason})
            next_log = now + 10
        await asyncio.sleep(0.5)


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
