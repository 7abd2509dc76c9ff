"""`make run`'s engine (`python -m devstack.run`) as an operator uses it: everything comes up ready, a
SIGTERM leaves no process behind, and a second run finds the first run's data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack.procs import pid_alive, read_pid
from devstack.run import Stack
from tests.running_stack import SERVICES, RunningStack, priority

pytestmark = pytest.mark.slow


def server_pids(state: Path) -> list[int]:
    candidates = [
        *(state / "pids").glob("*.pid"),
        state / "postgres" / "data" / "postmaster.pid",
        state / "rabbitmq" / "rabbitmq.pid",
        state / "prometheus" / "prometheus.pid",
        state / "alertmanager" / "alertmanager.pid",
    ]
    return [pid for path in candidates if (pid := read_pid(path))]


def web_logins(owner_url: str) -> list[str]:
    """The roles the web's connections log in as (its pool keeps one open), each a member of vigil_web."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT usename, pg_has_role(usename, 'vigil_web', 'member') FROM pg_stat_activity "
            "WHERE datname = 'vigil' AND usename <> 'vigil'"
        ).fetchall()
    assert all(member for _, member in rows), rows
    return [name for name, _ in rows]


def test_an_older_state_directory_gets_the_secrets_it_lacks_and_keeps_the_others(tmp_path: Path) -> None:
    old = {"postgres": "p" * 32, "rabbitmq": "r" * 32, "ingest_token": "i" * 32, "api_token": "a" * 32}
    (tmp_path / "secrets.json").write_text(json.dumps(old))
    made = Stack(tmp_path).secrets()
    assert {k: made[k] for k in old} == old and len(made["web_db"]) >= 16
    assert json.loads((tmp_path / "secrets.json").read_text()) == made
    assert Stack(tmp_path).secrets() == made


def test_make_run_brings_everything_up_and_down_and_keeps_data(stack_env: dict[str, str]) -> None:
    state = Path(stack_env["VIGIL_STATE_DIR"])
    first = RunningStack(stack_env)
    try:
        first.wait_for("Vigil is running")
        for name in SERVICES:
            answer = httpx.get(f"http://127.0.0.1:{stack_env[f'VIGIL_{name.upper()}_PORT']}/readyz", timeout=5)
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["checks"]["broker"] is True
        # The enricher and reporter give the CPU up to the alert path (VIGIL_BACKGROUND_NICE, default 10).
        for name in SERVICES:
            nice, group = priority(read_pid(state / "pids" / f"{name}.pid") or 0)
            expected = 10 if name in {"enricher", "reporter"} else 0
            assert (nice, group in {None, str(expected)}) == (expected, True), (name, nice, group)
        made = json.loads((state / "secrets.json").read_text())
        assert any(made["ingest_token"] in line for line in first.lines), "the ingest token is printed"
        pids = server_pids(state)
        assert len(pids) >= 7, pids  # five services, PostgreSQL, RabbitMQ (and monitoring)
        db = f"postgresql://vigil:{made['postgres']}@127.0.0.1:{stack_env['VIGIL_POSTGRES_PORT']}/vigil"
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept_across_runs (note text)")
            conn.execute("INSERT INTO kept_across_runs VALUES ('first run')")
        # The web logs in as its own login, a member of vigil_web, with a generated password: not as the owner.
        assert len(made["web_db"]) >= 16
        assert web_logins(db) == ["vigil_web_login"]
    finally:
        code = first.terminate()
    assert code == 0, "\n".join(first.lines[-40:])
    time.sleep(0.5)
    assert [pid for pid in pids if pid_alive(pid)] == [], "processes left running after SIGTERM"

    second = RunningStack(stack_env)
    try:
        second.wait_for("Vigil is running")
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT note FROM kept_across_runs").fetchall() == [("first run",)]
        assert json.loads((state / "secrets.json").read_text()) == made  # the same passwords, the web's too
        assert web_logins(db) == ["vigil_web_login"]
        pids = server_pids(state)
    finally:
        assert second.terminate() == 0
    time.sleep(0.5)
    assert [pid for pid in pids if pid_alive(pid)] == []
