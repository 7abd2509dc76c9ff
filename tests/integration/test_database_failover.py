"""The services' pool over a primary and its standby (a libpq multi-host URL with target_session_attrs=read-write):
writes go to the primary; after the primary is killed and the standby promoted, the same pool writes to the new
primary; a server that takes no writes is never handed out, and a write it refused is an outage, not the work's fault.
"""

from __future__ import annotations

import asyncio
import os
import resource

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from devstack.postgres import Postgres, multi_host_url
from shared.db import WRITABLE_CHECK_EVERY_S, is_database_outage, open_pool


async def test_the_pool_writes_to_the_primary_and_follows_a_promoted_standby(
    replicated: tuple[Postgres, Postgres],
) -> None:
    primary, standby = replicated
    with psycopg.connect(primary.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (n int PRIMARY KEY, port int NOT NULL)")
    pool = await open_pool(multi_host_url(primary, standby), max_size=2)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("INSERT INTO notes SELECT 1, inet_server_port() RETURNING port")).fetchone()
        assert row is not None and row["port"] == primary.port
        standby.wait_caught_up()

        # What a standby says to a write: an outage (held and retried), not a refused message (parked).
        read_only = psycopg.errors.ReadOnlySqlTransaction
        with psycopg.connect(standby.url) as on_standby, pytest.raises(read_only) as refused:
            on_standby.execute("INSERT INTO notes VALUES (9, 0)")
        assert is_database_outage(refused.value)

        primary.kill()
        standby.promote()
        # The pooled connections went with the primary: the check drops them and the URL finds the new primary.
        async with pool.connection() as conn:
            row = await (await conn.execute("INSERT INTO notes SELECT 2, inet_server_port() RETURNING port")).fetchone()
            ports = [r["port"] for r in await (await conn.execute("SELECT port FROM notes ORDER BY n")).fetchall()]
        assert row is not None and row["port"] == standby.port
        assert ports == [primary.port, standby.port]

        # A server that stops taking writes (as a primary being demoted does): its connections are not handed out
        # once it is asked again; until then a write it refuses is an outage (above).
        with psycopg.connect(standby.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(WRITABLE_CHECK_EVERY_S)
        with pytest.raises(PoolTimeout):
            async with pool.connection(timeout=3) as conn:
                await conn.execute("INSERT INTO notes VALUES (3, 0)")
    finally:
        await pool.close()


async def test_a_connection_whose_descriptor_is_past_1024_is_handed_out(db_url: str) -> None:
    """The check before a checkout looks at the socket with poll(), not select(), which takes no descriptor past
    1,023 (FD_SETSIZE) and raised: a process with many sockets open (the web with its live clients) got no
    connection at all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = 2048 if hard == resource.RLIM_INFINITY else min(2048, hard)
    if soft != resource.RLIM_INFINITY and soft < room:
        resource.setrlimit(resource.RLIMIT_NOFILE, (room, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        pool = await open_pool(db_url, max_size=1)
        try:
            for _ in range(2):  # the first checkout after the connection was made, then one from the pool
                async with pool.connection() as conn:
                    assert conn.fileno() > 1100
                    row = await (await conn.execute("SELECT 1 AS one")).fetchone()
                assert row == {"one": 1}
        finally:
            await pool.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
