"""Throwaway servers for tests and benchmarks: a world-traversable temporary directory (as root, PostgreSQL runs
as `postgres` and must reach its data) and servers in it on free loopback ports with random passwords."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from devstack.postgres import Postgres
from devstack.procs import free_port, free_ports
from devstack.rabbitmq import RabbitMQ
from devstack.rabbitmq_cluster import RabbitCluster


def temp_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def new_postgres(root: Path) -> Postgres:
    (root / "pg").mkdir(mode=0o755)
    (root / "pg").chmod(0o755)  # mkdir's mode is masked by the umask
    return Postgres(root / "pg" / "data", free_port(), secrets.token_hex(12))


def new_replicated_postgres(root: Path, *, fsync: bool = False) -> tuple[Postgres, Postgres]:
    """A running primary and a running hot standby streaming from it (for failover drills); stop both.

    Unlike new_postgres, both are started: a standby is copied from its running primary. `fsync=False` (the
    default) trades durability for speed on both, as the test suite's cluster does.
    """
    primary_dir, standby_dir = root / "pg", root / "pg-standby"
    for path in (primary_dir, standby_dir):
        path.mkdir(mode=0o755)
        path.chmod(0o755)  # mkdir's mode is masked by the umask
    primary_port, standby_port = free_ports(2)
    primary = Postgres(
        primary_dir / "data", primary_port, secrets.token_hex(12), replication_password=secrets.token_hex(12)
    )
    primary.start(fsync=fsync)
    standby: Postgres | None = None
    try:
        standby = primary.make_standby(standby_dir / "data", standby_port)
        standby.start(fsync=fsync)
    except BaseException:
        if standby is not None:
            standby.stop()
        primary.stop()
        raise
    return primary, standby


def new_rabbitmq(root: Path) -> RabbitMQ:
    amqp, management = free_ports(2)
    return RabbitMQ(root / "rabbitmq", amqp, management, secrets.token_hex(12))


def new_rabbitmq_cluster(root: Path, nodes: int = 3) -> RabbitCluster:
    """Like new_rabbitmq, not started yet: start() takes some 10 s for 3 nodes on 2 cores; stop() it."""
    return RabbitCluster(root / "rabbitmq-cluster", nodes, secrets.token_hex(12))
