"""The failover drill's database half, on real servers: a primary streaming to a hot standby, the primary killed
with SIGKILL, the standby promoted, and a client that connects anew with the libpq multi-host URL the services use
landing on whichever server takes writes."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from devstack.postgres import Postgres, multi_host_url
from devstack.procs import pid_alive


def server_of(url: str) -> tuple[int, bool]:
    """The port and recovery state of the server a new connection with `url` reaches."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
    assert row is not None
    return row[0], row[1]


def test_standby_streams_and_takes_over_when_the_primary_is_killed(replicated: tuple[Postgres, Postgres]) -> None:
    primary, standby = replicated
    with psycopg.connect(primary.url, autocommit=True) as conn:
        streaming = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
        conn.execute("CREATE TABLE drill (id int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO drill VALUES (1, 'before the kill')")
    assert streaming == [(standby.slot_name, "streaming")]
    assert not primary.in_recovery()
    assert standby.in_recovery()

    standby.wait_caught_up(timeout=30)
    with psycopg.connect(standby.url, autocommit=True) as conn:
        assert conn.execute("SELECT id, note FROM drill").fetchall() == [(1, "before the kill")]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO drill VALUES (2, 'on the standby')")

    url = multi_host_url(primary, standby)
    assert url.endswith(f"@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/vigil?target_session_attrs=read-write")
    assert server_of(url) == (primary.port, False)
    # The order of the hosts is no preference: a read-only server is passed over wherever it stands.
    assert server_of(multi_host_url(standby, primary)) == (primary.port, False)

    killed = primary.kill()
    assert not pid_alive(killed)
    # Until the standby is promoted there is no server to write to, and the URL says so rather than landing on it.
    with pytest.raises(psycopg.OperationalError, match="read-only"):
        server_of(url)

    standby.promote()
    assert server_of(url) == (standby.port, False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO drill VALUES (2, 'after the promotion')")
        rows = conn.execute("SELECT id, note FROM drill ORDER BY id").fetchall()
    assert rows == [(1, "before the kill"), (2, "after the promotion")]

    async def async_port() -> int:
        # The services connect through psycopg's async connections (their pools): the same URL, the same server.
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
            cur = await conn.execute("SELECT inet_server_port()")
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    assert asyncio.run(async_port()) == standby.port
