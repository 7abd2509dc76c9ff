"""A PostgreSQL cluster of our own: initdb into a directory, serve on a loopback port, stop by PID.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.procs import StackError, read_pid, spawn, stop_pid, wait_until

PG_USER = "postgres"


def pg_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise StackError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


@dataclass
class Postgres:
    data_dir: Path
    port: int
    password: str
    user: str = "vigil"
    database: str = "vigil"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def _as_owner(self) -> str | None:
        return PG_USER if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, PG_USER, PG_USER)

    def init(self) -> None:
        """Create the cluster with a password-protected superuser; a no-op when it exists."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        pwfile = self.data_dir.parent / ".pgpass-init"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        cmd = [
            pg_bin("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--pwfile",
            str(pwfile),
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
        if self._as_owner():
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            raise StackError(f"initdb failed: {exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, *, fsync: bool = True) -> None:
        self.init()
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid and _alive(pid):
            raise StackError(f"PostgreSQL already runs from {self.data_dir} (pid {pid})")
        sock_dir = self.data_dir.parent / "pg-socket"
        sock_dir.mkdir(exist_ok=True)
        self._chown(sock_dir)
        argv = [
            pg_bin("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sock_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        if not fsync:
            # Throwaway test clusters: durability is not what is under test, speed is welcome.
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        spawn(argv, log=self.log, user=self._as_owner())
        wait_until(self._accepts, timeout=60, what="PostgreSQL", log=self.log)
        self._ensure_database()

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.admin_url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')  # our own constant name

    def stop(self) -> None:
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid:
            # SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, data is flushed.
            stop_pid(pid, sig=2, timeout=60)
        deadline = time.monotonic() + 10
        while (self.data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    from devstack.procs import pid_alive

    return pid_alive(pid)
