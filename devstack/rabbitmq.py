"""A RabbitMQ node of our own: Debian's server started directly with its own HOME, node name and ports
(AMQP, management, Erlang distribution and epmd), so it never meets the system's node. Stopping it also
stops the epmd it started."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.procs import StackError, log_tail, pid_alive, port_open, read_pid, spawn, stop_pid, wait_until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class RabbitMQ:
    base_dir: Path
    port: int
    management_port: int
    password: str
    user: str = "vigil"
    # The server process launch() started, to tell a boot that failed from one that is slow.
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def dist_port(self) -> int:
        return self.port + 20000 if self.port < 45000 else self.port - 20000

    @property
    def epmd_port(self) -> int:
        return self.management_port + 20000 if self.management_port < 45000 else self.management_port - 20000

    @property
    def node(self) -> str:
        return f"vigil{self.port}@localhost"

    def url(self, vhost: str = "/") -> str:
        from urllib.parse import quote

        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    @property
    def log(self) -> Path:
        return self.base_dir / "rabbitmq.log"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "rabbitmq.pid"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.base_dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
        }

    def config_lines(self) -> list[str]:
        """rabbitmq.conf; a cluster node adds its peer discovery settings."""
        return [
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            "management.tcp.ip = 127.0.0.1",
            f"management.tcp.port = {self.management_port}",
            f"default_user = {self.user}",
            f"default_pass = {self.password}",
            "default_vhost = /",
            "log.console = false",
            "log.file.level = warning",
            # Small machines: do not block publishers at 40% of RAM or under 50 MB of disk.
            "vm_memory_high_watermark.relative = 0.6",
            "disk_free_limit.absolute = 200MB",
        ]

    def advanced_config(self) -> str:
        """advanced.config (Erlang terms): for settings rabbitmq.conf has no key for."""
        return "[].\n"

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "rabbitmq.conf").write_text("\n".join([*self.config_lines(), ""]))
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.base_dir / "advanced.config").write_text(self.advanced_config())
        cookie = self.base_dir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(b64encode(os.urandom(15)).decode().replace("=", ""))
            cookie.chmod(0o400)

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Start the server without waiting for it, so that several nodes can boot at once."""
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise StackError("RabbitMQ is not installed (apt-get install rabbitmq-server)")
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid):
            raise StackError(f"RabbitMQ already runs from {self.base_dir} (pid {pid})")
        self._write_config()
        self.process = spawn([str(RABBIT_BIN / "rabbitmq-server")], log=self.log, env=self.env())

    def wait_started(self, timeout: float = 120) -> None:
        wait_until(self._booted, timeout=timeout, what=f"RabbitMQ {self.node}", log=self.log)

    def _booted(self) -> bool:
        # A failed boot ("BOOT FAILED") ends the process at once: say so then rather than at the timeout.
        if self.process is not None and (code := self.process.poll()) is not None:
            raise StackError(f"RabbitMQ {self.node} exited with status {code} while booting{log_tail(self.log)}")
        return self._api_up()

    def _api_up(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            self.api("GET", "/api/overview")
            return True
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method: str, path: str, body: object = None) -> object:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": "Basic " + b64encode(f"{self.user}:{self.password}".encode()).decode(),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback URL
            raw = response.read()
        return json.loads(raw) if raw else None

    def add_vhost(self, name: str) -> str:
        """A fresh virtual host with full rights for our user; returns its AMQP URL."""
        make_vhost(self.api, self.user, name)
        return self.url(name)

    def delete_vhost(self, name: str) -> None:
        drop_vhost(self.api, name)

    def stop(self) -> None:
        self.stop_server()
        self.stop_epmd()

    def stop_server(self) -> None:
        """Stop the node (gracefully, SIGKILL after a minute) but not its epmd, which other nodes may share."""
        pid = read_pid(self.pid_file)
        if pid:
            stop_pid(pid, timeout=60)

    def stop_epmd(self) -> None:
        # epmd outlives the node it served; it was started with our port, so stop exactly that one.
        subprocess.run(
            ["epmd", "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            capture_output=True,
            check=False,
        )


def make_vhost(api: Callable[..., object], user: str, name: str) -> None:
    """A virtual host with full rights for `user`, through a node's management API (`api(method, path, body)`)."""
    from urllib.parse import quote

    quoted = quote(name, safe="")
    api("PUT", f"/api/vhosts/{quoted}", {})
    api("PUT", f"/api/permissions/{quoted}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})


def drop_vhost(api: Callable[..., object], name: str) -> None:
    from urllib.parse import quote

    api("DELETE", f"/api/vhosts/{quote(name, safe='')}")
