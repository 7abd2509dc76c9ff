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
from urllib.parse import quote, urlsplit, urlunsplit

from devstack.procs import StackError, read_pid, spawn, stop_pid, wait_until

PG_USER = "postgres"
# The web's login and the group role migration 0060_roles grants the web's reads and writes to.
WEB_LOGIN = "vigil_web_login"
WEB_ROLE = "vigil_web"


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


def login_url(url: str, user: str, password: str) -> str:
    """`url`'s server and database, logged in as `user`."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}"))


def ensure_login(owner_url: str, login: str, password: str, role: str) -> str:
    """Make `login` a member of `role` with `password` (made, or its password set, as it is found); returns the URL
    it connects to the owner's database with. The owner needs CREATEROLE (a superuser, as `make run`'s is)."""
    import psycopg
    from psycopg import sql

    name, secret, group = sql.Identifier(login), sql.Literal(password), sql.Identifier(role)
    try:
        with psycopg.connect(owner_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
            make = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}")
            conn.execute(make.format(name, secret))
            conn.execute(sql.SQL("GRANT {} TO {}").format(group, name))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StackError(
            f"the database user may not make the web's login {login} ({exc.diag.message_primary}): give it CREATEROLE, "
            f"or set VIGIL_WEB_DATABASE_URL to a login that is a member of {role}"
        ) from exc
    return login_url(owner_url, login, password)


def _alive(pid: int) -> bool:
    from devstack.procs import pid_alive

    return pid_alive(pid)
