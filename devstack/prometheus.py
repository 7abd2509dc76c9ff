"""A Prometheus server of our own: Debian's /usr/bin/prometheus with a given config, its TSDB under a directory
of ours, listening on a loopback port; stopped by PID. Used by tests, benches and `make run`/`make demo`."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.procs import StackError, pid_alive, read_pid, spawn, stop_pid, wait_until

PROMETHEUS_BIN = "/usr/bin/prometheus"


@dataclass
class Prometheus:
    """`config` is the text of prometheus.yml, written to `base_dir/prometheus.yml` at start (None: keep the file
    that is there). `base_dir` also holds the TSDB (`data/`), the log and the pid file."""

    base_dir: Path
    port: int
    config: str | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.base_dir / "prometheus.yml"

    @property
    def log(self) -> Path:
        return self.base_dir / "prometheus.log"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "prometheus.pid"

    def start(self, *, timeout: float = 60) -> None:
        binary = shutil.which(PROMETHEUS_BIN) or shutil.which("prometheus")
        if not binary:
            raise StackError("Prometheus is not installed (apt-get install prometheus)")
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid):
            raise StackError(f"Prometheus already runs from {self.base_dir} (pid {pid})")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            self.config_file.write_text(self.config)
        if not self.config_file.exists():
            raise StackError(f"no Prometheus config at {self.config_file}")
        argv = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Alert links (generatorURL) name this address, which is VIGIL_PROMETHEUS_URL: the enricher runs only the
            # expressions of the Prometheus it is configured with, and the links open in a browser on this machine.
            f"--web.external-url={self.url}",
            "--log.level=warn",
            *self.extra_args,
        ]
        proc = spawn(argv, log=self.log, cwd=self.base_dir)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            wait_until(lambda: proc.poll() is None and self.ready(), timeout=timeout, what="Prometheus", log=self.log)
        except StackError:
            self.stop()
            raise

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310 (loopback URL)
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        pid = read_pid(self.pid_file)
        if pid:
            stop_pid(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)
