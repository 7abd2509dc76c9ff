"""An Alertmanager of our own: Debian's `prometheus-alertmanager` on a loopback port, with its config and
storage under one directory, no clustering (no gossip port), stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.procs import StackError, pid_alive, read_pid, spawn, stop_pid, wait_until

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


@dataclass
class Alertmanager:
    """`config` is the YAML text (written to `<base_dir>/alertmanager.yml`) or the path of an existing file."""

    base_dir: Path
    port: int
    config: str | Path
    extra_args: Sequence[str] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.config if isinstance(self.config, Path) else self.base_dir / "alertmanager.yml"

    @property
    def log(self) -> Path:
        return self.base_dir / "alertmanager.log"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "alertmanager.pid"

    def start(self, *, timeout: float = 60) -> None:
        binary = shutil.which(ALERTMANAGER_BIN) or shutil.which("prometheus-alertmanager")
        if not binary:
            raise StackError("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid):
            raise StackError(f"Alertmanager already runs from {self.base_dir} (pid {pid})")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.config, str):
            self.config_file.write_text(self.config)
        storage = self.base_dir / "data"
        storage.mkdir(exist_ok=True)
        argv = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Empty: no cluster, so nothing listens beyond the web port and there is no gossip to settle.
            "--cluster.listen-address=",
            *self.extra_args,
        ]
        process = spawn(argv, log=self.log)
        self.pid_file.write_text(f"{process.pid}\n")
        try:
            wait_until(self._ready, timeout=timeout, what="Alertmanager", log=self.log)
        except StackError:
            self.stop()
            raise

    def _ready(self) -> bool:
        pid = read_pid(self.pid_file)
        if pid is None or not pid_alive(pid):
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:]) if self.log.exists() else ""
            raise StackError(f"Alertmanager exited at start:\n{tail}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def api(self, method: str, path: str, body: object = None) -> Any:
        """Call Alertmanager's HTTP API, e.g. `api("POST", "/api/v2/alerts", [...])`."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback URL
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        self.api("POST", "/api/v2/alerts", alerts)

    def reload(self) -> None:
        """Re-read the config file (after rewriting `config`, call `write_config` first)."""
        self.api("POST", "/-/reload")

    def write_config(self, text: str) -> None:
        self.config = text
        self.config_file.write_text(text)

    def stop(self) -> None:
        pid = read_pid(self.pid_file)
        if pid:
            stop_pid(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)


def alertmanager_available() -> bool:
    return os.access(ALERTMANAGER_BIN, os.X_OK) or shutil.which("prometheus-alertmanager") is not None
