"""`make run`: the whole system on this machine.

Starts (or reuses, with VIGIL_DATABASE_URL and VIGIL_AMQP_URL) PostgreSQL and RabbitMQ under the state
directory on loopback, plus Prometheus and Alertmanager (Alertmanager routed to ingest with the ingest
token), applies the migrations, then supervises the five services until Ctrl-C or SIGTERM, and stops
everything it started. A second run reuses the data and the secrets in the state directory.

VIGIL_RABBITMQ_NODES > 1 starts a RabbitMQ cluster of that many nodes, and VIGIL_POSTGRES_STANDBY a synchronous
streaming standby of PostgreSQL; the services are then given every node's URL and both servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from devstack.postgres import WEB_LOGIN, WEB_ROLE, Postgres, ensure_login, multi_host_url
from devstack.procs import StackError
from devstack.rabbitmq import RabbitMQ
from devstack.rabbitmq_cluster import RabbitCluster
from devstack.readiness import wait_ready
from devstack.supervisor import Supervisor, kill_leftovers
from shared.config import Settings, load_settings
from shared.db import migrate

SERVICES = ("ingest", "correlator", "enricher", "reporter", "web")
SECRETS = ("postgres", "rabbitmq", "ingest_token", "api_token", "web_db", "postgres_replication")
# A cluster's node i listens on the single node's ports plus 10 * i; the nodes share one epmd port.
NODE_PORT_STEP = 10


class StackSettings(BaseSettings):
    """Ports of the servers `make run` starts itself (the services' own settings are in shared.config)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore", env_ignore_empty=True)

    postgres_port: int = Field(55432, ge=1, le=65535)
    rabbitmq_port: int = Field(55672, ge=1, le=65535)
    rabbitmq_management_port: int = Field(55673, ge=1, le=65535)
    rabbitmq_nodes: int = Field(
        1, ge=1, le=7, description="RabbitMQ nodes `make run` starts: more than one makes a cluster on loopback."
    )
    postgres_standby: bool = Field(False, description="Start a synchronous streaming standby of PostgreSQL too.")
    postgres_standby_port: int = Field(55433, ge=1, le=65535)
    prometheus_port: int = Field(59090, ge=1, le=65535)
    alertmanager_port: int = Field(59093, ge=1, le=65535)
    with_monitoring: bool = Field(True, description="Start Prometheus and Alertmanager too.")
    loki_port: int = Field(53100, ge=1, le=65535, description="The demo's Loki-API server.")
    node_exporter_port: int = Field(59100, ge=1, le=65535, description="The demo's node exporter, if installed.")


class Server(Protocol):
    def stop(self) -> None: ...


@dataclass
class Stack:
    state: Path
    started: list[tuple[str, Server]] = field(default_factory=list)

    def secrets(self) -> dict[str, str]:
        """Passwords and tokens made once per state directory, so a second run finds its data again. One that a
        state directory from an older Vigil lacks is made and added; the others are kept."""
        path = self.state / "secrets.json"
        made: dict[str, str] = dict(json.loads(path.read_text())) if path.exists() else {}
        missing = [name for name in SECRETS if name not in made]
        if missing:
            made.update({name: secrets.token_urlsafe(24) for name in missing})
            path.write_text(json.dumps(made, indent=2))
            path.chmod(0o600)
        return made

    def stop_all(self) -> None:
        for name, server in reversed(self.started):
            print(f"vigil: stopping {name}", flush=True)
            with contextlib.suppress(Exception):
                server.stop()
        self.started.clear()


def postgres_dir(state: Path) -> Path:
    """PostgreSQL runs as `postgres` when we are root; it needs a data directory it can reach."""
    wanted = state / "postgres"
    if os.geteuid() != 0 or _reachable_by_postgres(state):
        return wanted
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    elsewhere = Path("/var/lib/vigil-dev") / digest
    elsewhere.mkdir(parents=True, exist_ok=True)
    elsewhere.chmod(0o755)
    if not wanted.is_symlink():
        wanted.symlink_to(elsewhere, target_is_directory=True)
    return elsewhere


def _reachable_by_postgres(path: Path) -> bool:
    import subprocess

    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)], check=False).returncode == 0


def start_servers(stack: Stack, settings: Settings, ports: StackSettings, *, demo: bool) -> dict[str, str]:
    """Start what is not given from outside; returns the VIGIL_* variables the services need."""
    made = stack.secrets()
    env: dict[str, str] = {}
    external = bool(os.environ.get("VIGIL_DATABASE_URL")) and bool(os.environ.get("VIGIL_AMQP_URL"))
    if external:
        print("vigil: using the PostgreSQL and RabbitMQ of VIGIL_DATABASE_URL and VIGIL_AMQP_URL", flush=True)
    else:
        pg_root = postgres_dir(stack.state)
        pg_root.mkdir(parents=True, exist_ok=True)
        pg_root.chmod(0o755)
        replication = made["postgres_replication"] if ports.postgres_standby else None
        pg = Postgres(pg_root / "data", ports.postgres_port, made["postgres"], replication_password=replication)
        print(f"vigil: starting PostgreSQL on 127.0.0.1:{pg.port}", flush=True)
        pg.start()
        stack.started.append(("PostgreSQL", pg))
        env["VIGIL_DATABASE_URL"] = pg.url
        if ports.postgres_standby:
            standby_root = pg_root / "standby"
            standby_root.mkdir(mode=0o755, exist_ok=True)
            standby_root.chmod(0o755)
            standby = pg.make_standby(standby_root / "data", ports.postgres_standby_port)
            print(f"vigil: starting PostgreSQL's standby on 127.0.0.1:{standby.port}", flush=True)
            standby.start()
            stack.started.append(("PostgreSQL standby", standby))
            pg.require_synchronous_standby()
            env["VIGIL_DATABASE_URL"] = multi_host_url(pg, standby)
        env["VIGIL_AMQP_URL"] = start_rabbitmq(stack, ports, made["rabbitmq"])
    env.setdefault("VIGIL_INGEST_TOKEN", os.environ.get("VIGIL_INGEST_TOKEN") or made["ingest_token"])
    env.setdefault("VIGIL_API_TOKEN", os.environ.get("VIGIL_API_TOKEN") or made["api_token"])
    # Plain http on loopback: a Secure cookie would never be sent back.
    env.setdefault("VIGIL_WEB_COOKIE_SECURE", os.environ.get("VIGIL_WEB_COOKIE_SECURE", "false"))
    if demo:
        env["VIGIL_LOKI_URL"] = f"http://127.0.0.1:{ports.loki_port}"
        # Short grace and flapping windows, so the storm's incidents resolve and flap within the minute.
        env["VIGIL_CORRELATION_RULES"] = str(Path(__file__).with_name("demo-correlation.yml"))
    if ports.with_monitoring or demo:
        env.update(start_monitoring(stack, settings, ports, env["VIGIL_INGEST_TOKEN"], demo=demo))
    return env


def start_rabbitmq(stack: Stack, ports: StackSettings, password: str) -> str:
    """One RabbitMQ node, or a cluster of VIGIL_RABBITMQ_NODES; returns the services' VIGIL_AMQP_URL."""
    if ports.rabbitmq_nodes == 1:
        mq = RabbitMQ(stack.state / "rabbitmq", ports.rabbitmq_port, ports.rabbitmq_management_port, password)
        print(f"vigil: starting RabbitMQ on 127.0.0.1:{mq.port}", flush=True)
        mq.start()
        stack.started.append(("RabbitMQ", mq))
        return mq.url()
    node_ports = []
    for i in range(ports.rabbitmq_nodes):
        amqp, management = ports.rabbitmq_port + NODE_PORT_STEP * i, ports.rabbitmq_management_port + NODE_PORT_STEP * i
        node_ports += [amqp, management, amqp + 2]  # the third: the node's Erlang distribution port
    node_ports.append(ports.rabbitmq_port + 7)  # the nodes' shared epmd
    cluster = RabbitCluster(stack.state / "rabbitmq-cluster", ports.rabbitmq_nodes, password, ports=node_ports)
    print(
        f"vigil: starting a RabbitMQ cluster of {cluster.size} nodes on 127.0.0.1:"
        + ",".join(str(port) for port in node_ports[0::3][: cluster.size]),
        flush=True,
    )
    cluster.start()
    stack.started.append(("RabbitMQ cluster", cluster))
    return cluster.url_list()


def web_login(stack: Stack, settings: Settings) -> dict[str, str]:
    """The web connects with a login of its own in role vigil_web (reads incidents, writes only its sessions), made
    here with the owner's URL once the migrations have made the role; unless VIGIL_WEB_DATABASE_URL names one."""
    if os.environ.get("VIGIL_WEB_DATABASE_URL"):
        print("vigil: the web logs in with VIGIL_WEB_DATABASE_URL", flush=True)
        return {}
    url = ensure_login(settings.database_url, WEB_LOGIN, stack.secrets()["web_db"], WEB_ROLE)
    print(f"vigil: the web logs in as {WEB_LOGIN} (role {WEB_ROLE})", flush=True)
    return {"VIGIL_WEB_DATABASE_URL": url}


def node_exporter() -> str | None:
    """Debian's prometheus-node-exporter, if installed: the demo then charts this machine's real resources."""
    return shutil.which("prometheus-node-exporter")


def start_monitoring(
    stack: Stack, settings: Settings, ports: StackSettings, ingest_token: str, *, demo: bool
) -> dict[str, str]:
    """Prometheus scraping the services, Alertmanager sending to ingest: what a user of them would run."""
    from devstack.monitoring import start_alertmanager, start_prometheus

    env: dict[str, str] = {}
    if not os.environ.get("VIGIL_PROMETHEUS_URL"):
        extra = {"node": [f"127.0.0.1:{ports.node_exporter_port}"]} if demo and node_exporter() else {}
        prometheus = start_prometheus(
            stack.state / "prometheus", ports.prometheus_port, settings, ports.alertmanager_port, extra
        )
        stack.started.append(("Prometheus", prometheus))
        env["VIGIL_PROMETHEUS_URL"] = f"http://127.0.0.1:{ports.prometheus_port}"
    # The demo wants each flap of its flapping alert notified, not batched for a minute.
    timing = {"group_wait": "1s", "group_interval": "2s"} if demo else {}
    alertmanager = start_alertmanager(
        stack.state / "alertmanager", ports.alertmanager_port, settings, ingest_token, **timing
    )
    stack.started.append(("Alertmanager", alertmanager))
    env["VIGIL_ALERTMANAGER_URL"] = os.environ.get("VIGIL_ALERTMANAGER_URL") or alertmanager.url
    # The correlator polls its silences and inhibitions; the web makes silences there.
    env["VIGIL_ALERTMANAGER_API_URLS"] = os.environ.get("VIGIL_ALERTMANAGER_API_URLS") or alertmanager.url
    return env


def banner(settings: Settings, env: dict[str, str], ports: StackSettings) -> str:
    host = settings.host
    lines = [
        "",
        "Vigil is running. Ctrl-C stops everything.",
        f"  dashboard      http://{host}:{settings.web_port}/   (API token below, or a user from VIGIL_WEB_USERS_FILE)",
        f"  ingest         http://{host}:{settings.ingest_port}/api/v1/webhooks/alertmanager",
        f"  ingest token   {env['VIGIL_INGEST_TOKEN']}",
        f"  API token      {env['VIGIL_API_TOKEN']}",
    ]
    for name in SERVICES:
        port = getattr(settings, f"{name}_port")
        lines.append(f"  {name:<14} http://{host}:{port}/readyz")
    if ports.with_monitoring:
        lines.append(f"  Alertmanager   http://127.0.0.1:{ports.alertmanager_port}/")
        if "VIGIL_PROMETHEUS_URL" in env:
            lines.append(f"  Prometheus     {env['VIGIL_PROMETHEUS_URL']}/")
    management = f"http://127.0.0.1:{ports.rabbitmq_management_port}/"
    lines.append(f"  RabbitMQ UI    {management} (user vigil, password in {settings.state_dir}/secrets.json)")
    return "\n".join(lines) + "\n"


async def supervise(settings: Settings, env: dict[str, str], ports: StackSettings, *, demo: bool) -> None:
    supervisor = Supervisor(settings.state_dir / "pids")
    for name in SERVICES:
        supervisor.add(name, [sys.executable, "-m", f"services.{name}"], env)
    if demo:
        supervisor.add("loki", [sys.executable, "-m", "devstack.fakeloki", "--port", str(ports.loki_port)], {})
        if exporter := node_exporter():
            listen = f"--web.listen-address=127.0.0.1:{ports.node_exporter_port}"
            supervisor.add("node-exporter", [exporter, listen], {})
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    runner = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0)
    readyz = {name: f"http://{settings.host}:{getattr(settings, f'{name}_port')}/readyz" for name in SERVICES}
    try:
        await wait_ready(readyz, timeout=120, give_up=supervisor.stopped)
    except TimeoutError as exc:
        print(f"vigil: {exc}; still trying, see the output above", flush=True)
    print(banner(settings, env, ports), flush=True)
    if demo:
        demo_task = asyncio.create_task(run_demo(settings, env, ports))
        demo_task.add_done_callback(_report_demo_failure)
    await runner


async def run_demo(settings: Settings, env: dict[str, str], ports: StackSettings) -> None:
    from devstack.demo import Storm

    storm = Storm(
        alertmanager_url=f"http://127.0.0.1:{ports.alertmanager_port}",
        prometheus_url=env.get("VIGIL_PROMETHEUS_URL", settings.prometheus_url),
        ingest_url=f"http://{settings.host}:{settings.ingest_port}",
        ingest_token=env["VIGIL_INGEST_TOKEN"],
        loki_url=env["VIGIL_LOKI_URL"],
        local_instance=f"127.0.0.1:{ports.node_exporter_port}" if node_exporter() else None,
        vigil_instance=f"{settings.host}:{settings.ingest_port}",
    )
    try:
        await storm.run()
    finally:
        await storm.aclose()


def _report_demo_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"vigil: the demo storm failed: {task.exception()!r}", file=sys.stderr, flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    demo = "--demo" in sys.argv[1:]
    ports = StackSettings()
    settings = load_settings()
    state = settings.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    for pid in kill_leftovers(state / "pids"):
        print(f"vigil: stopped a service left over from an earlier run (pid {pid})", flush=True)
    stack = Stack(state)
    # SIGTERM during start-up must still stop what was started.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        env = start_servers(stack, settings, ports, demo=demo)
        os.environ.update(env)
        settings = load_settings()
        asyncio.run(migrate(settings.database_url))
        print("vigil: database migrated", flush=True)
        env.update(web_login(stack, settings))
        asyncio.run(supervise(settings, env, ports, demo=demo))
    except StackError as exc:
        print(f"vigil: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop_all()
    print("vigil: stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
