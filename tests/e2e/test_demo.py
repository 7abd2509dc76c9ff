"""`make demo` as a newcomer sees it: within about a minute of the storm, incidents exist with real context —
a flapping one, a resolved one, a security one with its Fail2Ban ban, and one whose metric series came from the
real Prometheus that scrapes Vigil — and each has its reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from devstack.procs import free_port
from tests.running_stack import RunningStack

pytestmark = pytest.mark.slow


def incidents(base: str, token: str) -> list[dict]:
    answer = httpx.get(f"{base}/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    answer.raise_for_status()
    return list(answer.json()["items"])


def test_demo_shows_real_incidents_with_context_and_reports(stack_env: dict[str, str]) -> None:
    stack_env["VIGIL_LOKI_PORT"] = str(free_port())
    stack_env["VIGIL_NODE_EXPORTER_PORT"] = str(free_port())
    demo = RunningStack(stack_env, demo=True)
    try:
        demo.wait_for("storm: done", timeout=240)
        token = json.loads((Path(stack_env["VIGIL_STATE_DIR"]) / "secrets.json").read_text())["api_token"]
        base = f"http://127.0.0.1:{stack_env['VIGIL_WEB_PORT']}"
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            found = {i["title"]: i for i in incidents(base, token)}
            reports = {
                title: httpx.get(f"{base}/api/v1/incidents/{i['key']}/report.json", headers=headers, timeout=30)
                for title, i in found.items()
            }
            bodies = {t: r.json() for t, r in reports.items() if r.status_code == 200}
            vigil = [t for t in bodies if t.startswith("VigilIngestBusy")]
            if (vigil and bodies[vigil[0]]["metrics"]) or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        assert demo.terminate() == 0
    titles = sorted(found)
    assert len(found) >= 4, titles
    assert any(i["flapping"] for i in found.values()), titles
    assert any(i["state"] == "resolved" and "web-1" in i["hosts"] for i in found.values()), titles
    security = [t for t in bodies if "Fail2Ban" in t]
    assert security and bodies[security[0]]["security_events"][0]["ip"] == "203.0.113.7"
    assert vigil and bodies[vigil[0]]["metrics"], "the Vigil alert's own expression was charted from Prometheus"
    assert set(bodies) == set(found), "every incident has its reports"
