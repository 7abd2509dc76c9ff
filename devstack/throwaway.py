"""Throwaway servers for tests and benchmarks: a world-traversable temporary directory (as root, PostgreSQL runs
as `postgres` and must reach its data) and servers in it on free loopback ports with random passwords."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from devstack.postgres import Postgres
from devstack.procs import free_port, free_ports
from devstack.rabbitmq import RabbitMQ


def temp_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def new_postgres(root: Path) -> Postgres:
    (root / "pg").mkdir(mode=0o755)
    (root / "pg").chmod(0o755)  # mkdir's mode is masked by the umask
    return Postgres(root / "pg" / "data", free_port(), secrets.token_hex(12))


def new_rabbitmq(root: Path) -> RabbitMQ:
    amqp, management = free_ports(2)
    return RabbitMQ(root / "rabbitmq", amqp, management, secrets.token_hex(12))
