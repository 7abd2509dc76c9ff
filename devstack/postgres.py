"""A PostgreSQL cluster of our own: initdb into a directory, serve on a loopback port, stop by PID.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.

A cluster given a `replication_password` is a primary that streams its WAL to standbys made with `make_standby`
(pg_basebackup, a physical replication slot each): the failover drill kills the primary, promotes a standby, and the
services follow it through a libpq multi-host URL (`multi_host_url`) that asks for a read-write session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from devstack.procs import StackError, child_pids, pid_alive, read_pid, spawn, stop_pid, wait_until

PG_USER = "postgres"
# The web's login and the group role migration 0060_roles grants the web's reads and writes to.
WEB_LOGIN = "vigil_web_login"
WEB_ROLE = "vigil_web"
REPLICATION_LOGIN = "vigil_replication"
# libpq's test for a server to stay on: one that takes writes. Not "primary" (libpq >= 14), which also accepts a
# primary whose default_transaction_read_only is on, as managed services set it while switching over or out of disk.
TARGET_SESSION_ATTRS = "read-write"


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
    # Set: the cluster serves WAL to standbys, which log in as `replication_user` with it (made at each start).
    replication_password: str | None = None
    replication_user: str = REPLICATION_LOGIN
    # The primary a standby made by make_standby streams from, until it is promoted.
    upstream: Postgres | None = field(default=None, repr=False, compare=False)

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
        if pid and pid_alive(pid):
            raise StackError(f"PostgreSQL already runs from {self.data_dir} (pid {pid})")
        sock_dir = self.data_dir.parent / "pg-socket"
        sock_dir.mkdir(exist_ok=True)
        self._chown(sock_dir)
        if self.replication_password is not None:
            self._allow_replication_login()
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
        if self.replication_password is not None:
            # A standby gets the same settings, so that once promoted it can serve standbys of its own; a slot per
            # standby (make_standby) keeps the WAL it has not received yet, however far behind it falls.
            argv += ["-c", "wal_level=replica", "-c", "max_wal_senders=10", "-c", "max_replication_slots=10"]
            argv += ["-c", "hot_standby=on"]
        spawn(argv, log=self.log, user=self._as_owner())
        wait_until(self._accepts, timeout=60, what="PostgreSQL", log=self.log)
        if (self.data_dir / "standby.signal").exists():
            # A standby's databases and roles are the primary's, and it takes no writes.
            return
        self._ensure_database()
        if self.replication_password is not None:
            self._ensure_replication_login()

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
        pid = self._postmaster_pid()
        if pid is None:
            # Not running, or killed: a killed postmaster leaves its postmaster.pid behind, whose PID may be another
            # process's by now.
            return
        # SIGINT is PostgreSQL's "fast" shutdown: sessions are ended, data is flushed.
        stop_pid(pid, sig=2, timeout=60)
        deadline = time.monotonic() + 10
        while (self.data_dir / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _postmaster_pid(self) -> int | None:
        """The PID of the postmaster serving this data directory, None when none does."""
        pid = read_pid(self.data_dir / "postmaster.pid")
        if not pid or not pid_alive(pid):
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return pid
        if "-D" not in argv or argv.index("-D") + 1 >= len(argv):
            return pid  # not started by start(): trust postmaster.pid, as PostgreSQL itself does
        served = Path(argv[argv.index("-D") + 1])
        return pid if served.resolve() == self.data_dir.resolve() else None

    def in_recovery(self) -> bool:
        """True while the server is a standby (replaying WAL), False once it is a primary."""
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    # Streaming replication: a primary (replication_password set), its standbys, failover.

    def _allow_replication_login(self) -> None:
        """Only the replication login may stream WAL, and only from loopback: initdb lets every role replicate."""
        hba = self.data_dir / "pg_hba.conf"
        wanted = f"host replication {self.replication_user} 127.0.0.1/32 scram-sha-256"
        kept = [
            line
            for line in hba.read_text().splitlines()
            if line.startswith("#") or line.split()[1:2] != ["replication"]
        ]
        text = "\n".join([*kept, wanted]) + "\n"
        if hba.read_text() != text:
            hba.write_text(text)

    def _ensure_replication_login(self) -> None:
        import psycopg
        from psycopg import sql

        name, secret = sql.Identifier(self.replication_user), sql.Literal(self.replication_password)
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.replication_user,)).fetchone()
            make = sql.SQL(
                "ALTER ROLE {} LOGIN REPLICATION PASSWORD {}"
                if exists
                else "CREATE ROLE {} LOGIN REPLICATION PASSWORD {}"
            )
            conn.execute(make.format(name, secret))

    def make_standby(self, data_dir: Path, port: int) -> Postgres:
        """A hot standby of this running primary in `data_dir` (made with pg_basebackup), to serve on `port`;
        start() it. Its own physical replication slot on the primary keeps the WAL it has yet to receive. A
        `data_dir` that already is a standby (a second `make run`) is kept: its slot lets it catch up."""
        if self.replication_password is None:
            raise StackError("a standby needs a primary made with a replication_password")
        if data_dir.parent == self.data_dir.parent:
            # The log and the socket directory live next to the data directory.
            raise StackError(f"the standby's data directory {data_dir} needs a parent directory of its own")
        standby = Postgres(
            data_dir,
            port,
            self.password,
            self.user,
            self.database,
            replication_password=self.replication_password,
            replication_user=self.replication_user,
            upstream=self,
        )
        if (data_dir / "standby.signal").exists():
            return standby
        if data_dir.exists() and any(data_dir.iterdir()):
            raise StackError(f"{data_dir} holds something other than a standby; remove it to make one there")
        slot = standby.slot_name
        self._drop_idle_slot(slot)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # PostgreSQL refuses a data directory others may read
        self._chown(data_dir)
        cmd = [
            pg_bin("pg_basebackup"),
            "-D",
            str(data_dir),
            # application_name ends up in primary_conninfo (-R): pg_stat_replication names the standby by its slot.
            "-d",
            f"application_name={slot}",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.replication_user,
            "--no-password",
            "-X",
            "stream",
            "-R",
            "--create-slot",
            "--slot",
            slot,
            "--checkpoint=fast",
        ]
        if self._as_owner():
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        # PGPASSWORD rather than the command line, where every user's `ps` would show it.
        env = {**os.environ, "PGPASSWORD": self.replication_password}
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            # pg_basebackup needs an empty directory: a half copy would stand in the way of the next attempt.
            shutil.rmtree(data_dir, ignore_errors=True)
            # A timeout's output is bytes whatever text=True says.
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            raise StackError(f"pg_basebackup failed: {stderr}") from exc
        return standby

    @property
    def slot_name(self) -> str:
        """The replication slot a standby on this port holds on its primary."""
        return f"standby_{self.port}"

    def _drop_idle_slot(self, slot: str) -> None:
        """A slot left by a standby whose directory is gone only pins WAL: the new standby makes it again."""
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active",
                (slot,),
            )

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Wait until this standby has replayed every transaction its primary committed before the call."""
        import psycopg

        if self.upstream is None:
            raise StackError(f"the PostgreSQL on port {self.port} is no standby of ours")
        # A primary started with fsync=False commits asynchronously: its newest commits may not be flushed yet,
        # and a walsender only sends flushed WAL. A commit of our own made synchronously flushes them all; it
        # must write WAL (a message no one decodes), as PostgreSQL commits a transaction that wrote none
        # asynchronously whatever synchronous_commit says.
        with psycopg.connect(self.upstream.admin_url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SET synchronous_commit = on")
            conn.execute("SELECT pg_logical_emit_message(true, 'vigil.wait_caught_up', '')")
            row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        if row is None:
            raise StackError("the primary reported no WAL position")
        target = row[0]

        def replayed() -> bool:
            with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
                done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
            return bool(done and done[0])

        wait_until(replayed, timeout=timeout, what=f"the standby's replay up to {target}", log=self.log)

    def require_synchronous_standby(self) -> None:
        """Commits on this primary wait until a standby has flushed them (`synchronous_standby_names = '*'`, as
        Patroni's synchronous mode sets): with asynchronous streaming a promoted standby can miss commits the
        primary had confirmed. A primary with no standby connected then holds its writes. The standby's own copy of
        the setting predates this, so once promoted it does not wait for a standby it lacks."""
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")

    def promote(self, timeout: int = 60) -> None:
        """Make this standby a primary that takes writes, as Patroni or a managed service does on failover."""
        import psycopg

        with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_promote(wait => true, wait_seconds => %s)", (timeout,)).fetchone()
        if not (row and row[0]):
            raise StackError(f"the standby on port {self.port} was not promoted within {timeout}s (see {self.log})")
        self.upstream = None

    def kill(self) -> int:
        """Kill the server as a crashed host would lose it: SIGKILL to the postmaster, then to its processes, so
        no backend finishes a commit on its own. Returns the postmaster's PID."""
        pid = self._postmaster_pid()
        if pid is None:
            raise StackError(f"no PostgreSQL runs from {self.data_dir}")
        # Listed first: once the postmaster is gone its processes belong to init.
        processes = child_pids(pid)
        os.kill(pid, signal.SIGKILL)
        for child in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in [pid, *processes]):
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL {pid} outlived SIGKILL by 10s (is it stuck in the kernel?)")
            time.sleep(0.05)
        self._remove_shared_memory()
        return pid

    def _remove_shared_memory(self) -> None:
        """Remove the SysV segment a killed postmaster leaves: the next start in this directory would, but a
        throwaway directory has no next start, and the kernel keeps them until it runs out."""
        try:
            line = (self.data_dir / "postmaster.pid").read_text().splitlines()[6]
            shmid = int(line.split()[1])
        except (OSError, IndexError, ValueError):
            return
        # Only a segment no process is attached to: the kernel may have given the id to a server started since.
        shown = subprocess.run(["ipcs", "-m", "-i", str(shmid)], capture_output=True, text=True, check=False)
        attached = re.search(r"\bnattch=(\d+)", shown.stdout)
        if shown.returncode == 0 and attached and attached.group(1) == "0":
            subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, check=False)


def multi_host_url(*servers: Postgres, database: str | None = None) -> str:
    """A URL libpq tries the servers of in order, keeping the first that takes writes: the services follow a
    promoted standby by connecting anew. The servers share their superuser (a standby's is its primary's)."""
    if not servers:
        raise ValueError("multi_host_url needs at least one server")
    first = servers[0]
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    login = f"{quote(first.user, safe='')}:{quote(first.password, safe='')}"
    name = quote(database or first.database, safe="")
    return f"postgresql://{login}@{hosts}/{name}?target_session_attrs={TARGET_SESSION_ATTRS}"


def login_url(url: str, user: str, password: str) -> str:
    """`url`'s server and database, logged in as `user`. A multi-host URL keeps its hosts."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"))


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
