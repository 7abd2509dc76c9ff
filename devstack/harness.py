"""The whole system started from code, for the end-to-end tests, `make bench` and `make chaos`: a throwaway
PostgreSQL and RabbitMQ, the services as real processes under the supervisor (so a killed one comes back as
it would under `make run`), and the levers a drill needs: kill a service, restart a server, add a replica.

`rabbitmq_nodes` > 1 starts a RabbitMQ cluster of that many nodes (the services get every node's URL);
`postgres_standby` a streaming standby the primary commits synchronously to (the services get a multi-host URL with
target_session_attrs=read-write), as the failover drills need."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from devstack.postgres import Postgres, multi_host_url
from devstack.procs import cpu_seconds, free_port, free_ports, peak_rss_mb, read_pid, tree_cpu_seconds
from devstack.rabbitmq import RabbitMQ
from devstack.rabbitmq_cluster import RabbitCluster
from devstack.readiness import wait_ready
from devstack.supervisor import Supervisor
from devstack.throwaway import (
    new_postgres,
    new_rabbitmq,
    new_rabbitmq_cluster,
    new_replicated_postgres,
    temp_root,
)
from shared.db import migrate

ALL_SERVICES = ("ingest", "correlator", "enricher", "reporter", "web")


@dataclass
class LocalVigil:
    services: Sequence[str] = ALL_SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    quiet: bool = os.environ.get("VIGIL_HARNESS_VERBOSE", "") == ""
    rabbitmq_nodes: int = 1
    postgres_standby: bool = False
    root: Path = field(init=False)
    postgres: Postgres = field(init=False)
    standby: Postgres | None = field(init=False, default=None)
    rabbitmq: RabbitMQ = field(init=False)
    cluster: RabbitCluster | None = field(init=False, default=None)
    env: dict[str, str] = field(init=False)
    ports: dict[str, int] = field(init=False)
    supervisor: Supervisor = field(init=False)
    _runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LocalVigil:
        self.root = temp_root("vigil-harness-")
        self.rabbitmq = new_rabbitmq(self.root)
        try:
            await asyncio.gather(asyncio.to_thread(self._start_postgres), asyncio.to_thread(self._start_rabbitmq))
            await migrate(self.database_url)
            self.ports = dict(zip(ALL_SERVICES, free_ports(len(ALL_SERVICES)), strict=True))
            self.env = {
                "VIGIL_DATABASE_URL": self.database_url,
                "VIGIL_AMQP_URL": self.amqp_url,
                "VIGIL_STATE_DIR": str(self.root),
                "VIGIL_INGEST_TOKEN": "harness-sender-token-01",
                "VIGIL_API_TOKEN": "harness-api-token-0001",
                "VIGIL_WEB_COOKIE_SECURE": "false",
                "VIGIL_RETRY_DELAYS_MS": "200,1000",
                "VIGIL_LOG_LEVEL": "WARNING",
                # Nothing answers there: the enricher records partial context instead of hanging.
                "VIGIL_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
                "VIGIL_LOKI_URL": f"http://127.0.0.1:{free_port()}",
                **{f"VIGIL_{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
                **self.extra_env,
            }
            self.supervisor = Supervisor(self.root / "pids", min_backoff=0.5, max_backoff=2)
            if self.quiet:
                self.supervisor.say = lambda *args, **kwargs: None  # type: ignore[method-assign]
            for name in self.services:
                self.supervisor.add(name, [sys.executable, "-m", f"services.{name}"], self.env)
            self._runner = asyncio.create_task(self.supervisor.run())
            await self.wait_ready(self.services)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            self.supervisor.stop()
            with contextlib.suppress(Exception):
                await self._runner
        servers: list[RabbitMQ | RabbitCluster | Postgres | None] = [
            self.cluster or self.rabbitmq,
            self.standby,
            getattr(self, "postgres", None),
        ]
        for server in servers:
            if server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(server.stop)
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_postgres(self) -> None:
        if not self.postgres_standby:
            self.postgres = new_postgres(self.root)
            self.postgres.start()
            return
        # Durable (fsync on) and synchronous: a commit the services were told of is on the standby too, so a
        # promoted standby has every alert the correlator acknowledged to the broker.
        self.postgres, self.standby = new_replicated_postgres(self.root, fsync=True)
        self.postgres.require_synchronous_standby()

    def _start_rabbitmq(self) -> None:
        if self.rabbitmq_nodes == 1:
            self.rabbitmq.start()
            return
        self.cluster = new_rabbitmq_cluster(self.root, self.rabbitmq_nodes)
        self.cluster.start()

    @property
    def database_url(self) -> str:
        """The services' PostgreSQL URL: the primary's, or with a standby both servers' (the writable one is used)."""
        if self.standby is None:
            return self.postgres.url
        return multi_host_url(self.postgres, self.standby)

    @property
    def amqp_url(self) -> str:
        """The services' RabbitMQ URL: the node's, or every cluster node's, comma-separated."""
        return self.cluster.url_list() if self.cluster is not None else self.rabbitmq.url()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def wait_ready(self, services: Sequence[str], timeout: float = 90) -> None:
        await wait_ready({name: f"{self.url(name)}/readyz" for name in services}, timeout=timeout)

    def pid(self, service: str) -> int:
        pid = read_pid(self.root / "pids" / f"{service}.pid")
        if pid is None:
            raise LookupError(f"{service} is not running")
        return pid

    def kill(self, service: str) -> int:
        """kill -9, as a crash would; the supervisor starts it again after its backoff."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid

    def add_replica(self, service: str, name: str) -> None:
        """Another process of `service` on its own port, consuming from the same queue."""
        port = free_port()
        self.ports[name] = port
        env = {**self.env, f"VIGIL_{service.upper()}_PORT": str(port)}
        self.supervisor.add(name, [sys.executable, "-m", f"services.{service}"], env)
        self.supervisor.start_child(self.supervisor.children[-1])

    async def restart_rabbitmq(self, down_for: float = 2.0) -> None:
        await asyncio.to_thread(self.rabbitmq.stop)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.rabbitmq.start)

    async def restart_postgres(self, down_for: float = 2.0) -> None:
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.postgres.start)

    def cpu_seconds(self, service: str) -> float:
        """User plus system CPU time of the service's current process so far; `postgres` and `rabbitmq` count the
        server's processes (PostgreSQL: the postmaster and its live backends)."""
        if service == "rabbitmq":
            return cpu_seconds(read_pid(self.rabbitmq.pid_file) or 0)
        if service == "postgres":
            return tree_cpu_seconds(read_pid(self.postgres.data_dir / "postmaster.pid"))
        return cpu_seconds(self.pid(service))

    def rss_peak_mb(self, service: str) -> float:
        """Peak resident memory (VmHWM) of the service's current process."""
        return peak_rss_mb(self.pid(service))
