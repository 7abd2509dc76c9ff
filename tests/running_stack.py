"""`python -m devstack.run` in a subprocess, as `make run` and `make demo` start it, for the tests that drive it; and
the CPU priority a process runs at (its nice value and its autogroup's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from devstack.procs import free_ports

SERVICES = ("ingest", "correlator", "enricher", "reporter", "web")


class RunningStack:
    def __init__(self, env: dict[str, str], *, demo: bool = False) -> None:
        self.env = env
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.run", *(["--demo"] if demo else [])],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in output:\n" + "\n".join(self.lines[-60:]))

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def stack_env_for_test() -> Iterator[dict[str, str]]:
    state = Path(tempfile.mkdtemp(prefix="vigil-run-"))
    state.chmod(0o755)
    env = {"VIGIL_STATE_DIR": str(state)}
    names = (*SERVICES, "postgres", "rabbitmq", "rabbitmq_management", "prometheus", "alertmanager")
    for name, port in zip(names, free_ports(len(names)), strict=True):
        env[f"VIGIL_{name.upper()}_PORT"] = str(port)
    for name in ("DATABASE_URL", "AMQP_URL", "PROMETHEUS_URL", "INGEST_TOKEN", "API_TOKEN"):
        env[f"VIGIL_{name}"] = ""
    yield env
    subprocess.run(["rm", "-rf", str(state)], check=False)


def priority(pid: int) -> tuple[int, str | None]:
    """The process's nice value and, where Linux has autogroups, its group's (`/autogroup-N nice 10`).

    A session that never called setsid since boot (as under some CI runners) is in the kernel's default group,
    whose file exists but reads empty: it has no group nice of its own, so that is None too."""
    nice = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])
    group = Path(f"/proc/{pid}/autogroup")
    words = group.read_text().split() if group.exists() else []
    return nice, words[-1] if words else None
