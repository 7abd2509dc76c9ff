"""Runs the five services as child processes: output prefixed per service, a crashed service restarted
with exponential backoff, and an orderly stop (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m")
RESET = "\033[0m"


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    colour: str = ""
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    stopping: bool = False
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class Supervisor:
    def __init__(self, pid_dir: Path, *, min_backoff: float = 1.0, max_backoff: float = 30.0) -> None:
        self.pid_dir = pid_dir
        self.children: list[Child] = []
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.tty = sys.stdout.isatty()
        self.stopped = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        colour = COLOURS[len(self.children) % len(COLOURS)] if self.tty else ""
        self.children.append(Child(name, argv, env, colour))

    def say(self, name: str, line: str, colour: str = "") -> None:
        width = max((len(c.name) for c in self.children), default=8)
        prefix = f"{name:<{width}} |"
        if colour:
            prefix = f"{colour}{prefix}{RESET}"
        sys.stdout.write(f"{prefix} {line}\n")
        sys.stdout.flush()

    async def _pump(self, child: Child, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.say(child.name, line.decode(errors="replace").rstrip(), child.colour)

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env={**os.environ, **child.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            # Own process group: a terminal's Ctrl-C reaches the supervisor, which stops children in order.
            start_new_session=True,
        )
        assert child.process.stdout is not None
        child.pumps = [asyncio.create_task(self._pump(child, child.process.stdout))]
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        (self.pid_dir / f"{child.name}.pid").write_text(f"{child.process.pid}\n")

    async def _keep_running(self, child: Child) -> None:
        backoff = self.min_backoff
        while not child.stopping:
            started = time.monotonic()
            await self._spawn(child)
            assert child.process is not None
            code = await child.process.wait()
            for pump in child.pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if child.stopping:
                break
            if time.monotonic() - started > 60:
                backoff = self.min_backoff  # it ran fine for a while: this is a fresh failure
            child.restarts += 1
            self.say(child.name, f"exited with {code}; restarting in {backoff:.0f}s", child.colour)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        (self.pid_dir / f"{child.name}.pid").unlink(missing_ok=True)

    def start_child(self, child: Child) -> None:
        """Supervise a child added after `run()` began."""
        self._keepers.append(asyncio.create_task(self._keep_running(child)))

    async def run(self) -> None:
        """Run every child until `stop()`; then stop them all and return."""
        for child in self.children:
            self.start_child(child)
        await self.stopped.wait()
        await self._stop_children()
        for keeper in self._keepers:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        for child in self.children:
            (self.pid_dir / f"{child.name}.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        self.stopped.set()

    async def _stop_children(self, grace: float = 20.0) -> None:
        running = [c for c in self.children if c.process and c.process.returncode is None]
        for child in self.children:
            child.stopping = True
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)

        async def reap(child: Child) -> None:
            assert child.process is not None
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                self.say(child.name, f"did not stop within {grace:.0f}s; killing", child.colour)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()

        await asyncio.gather(*(reap(c) for c in running))


def kill_leftovers(pid_dir: Path) -> list[int]:
    """Processes a previous supervisor left behind (it was killed with -9): stop them before starting anew."""
    from devstack.procs import pid_alive, read_pid, stop_pid

    stopped = []
    for pid_file in pid_dir.glob("*.pid"):
        pid = read_pid(pid_file)
        # Only a process that still is one of ours: a recycled PID belongs to someone else.
        if pid and pid_alive(pid) and any(mark in _cmdline(pid) for mark in (b"services.", b"devstack.", b"exporter")):
            stop_pid(pid, timeout=20)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
