"""Fixtures: a throwaway PostgreSQL and RabbitMQ for the whole test session (started and stopped here),
a fresh migrated database and a fresh RabbitMQ virtual host for each test, and in-process services."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from devstack.postgres import Postgres
from devstack.procs import free_port
from devstack.rabbitmq import RabbitMQ
from devstack.throwaway import new_postgres, new_rabbitmq, temp_root
from shared.config import Settings
from shared.db import migrate
from tests.replication import replicated  # noqa: F401 (a primary and its standby, for the failover tests)

TEMPLATE_DB = "vigil_template"


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    path = temp_root("vigil-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(stack_dir: Path) -> Iterator[Postgres]:
    server = new_postgres(stack_dir)
    server.start(fsync=False)
    try:
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        asyncio.run(migrate(server.admin_url(TEMPLATE_DB)))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rabbitmq(stack_dir: Path) -> Iterator[RabbitMQ]:
    server = new_rabbitmq(stack_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(postgres: Postgres) -> Iterator[str]:
    """A database of its own for each test, copied from the migrated template (fast)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.admin_url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield postgres.admin_url(name)
    with psycopg.connect(postgres.admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def amqp_url(rabbitmq: RabbitMQ) -> Iterator[str]:
    """A virtual host of its own for each test: exchanges and queues start empty."""
    vhost = f"t_{uuid.uuid4().hex[:12]}"
    url = rabbitmq.add_vhost(vhost)
    yield url
    rabbitmq.delete_vhost(vhost)


@pytest.fixture
def settings(db_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    """Settings for in-process services: the test's own database and vhost, quick retries."""
    return Settings(
        database_url=db_url,
        amqp_url=amqp_url,
        state_dir=tmp_path,
        ingest_port=free_port(),
        web_port=free_port(),
        correlator_port=free_port(),
        enricher_port=free_port(),
        reporter_port=free_port(),
        retry_delays_ms=(100, 200),
        refresh_interval_ms=1000,
        max_attempts=3,
        ingest_token="test-sender-token-0001",
        api_token="test-api-token-000001",
        database_pool_size=4,
    )


@asynccontextmanager
async def running(app: web.Application, port: int, *, keepalive_timeout: float | None = None) -> AsyncIterator[str]:
    """Serve an app on loopback for the length of the block; yields its base URL. `keepalive_timeout`: how long an
    idle connection stays open, when not aiohttp's default."""
    options = {} if keepalive_timeout is None else {"keepalive_timeout": keepalive_timeout}
    runner = web.AppRunner(app, access_log=None, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("VIGIL_TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    """Environment for `python -m devstack.run` in a temporary state directory, every port free."""
    from tests.running_stack import stack_env_for_test

    yield from stack_env_for_test()
