"""A real Alertmanager (Debian's) delivering to ingest: alerts posted to its API reach a queue bound to
`vigil.alerts` intact, and a broker outage delays them (503, Alertmanager retries) without losing or
duplicating any."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from devstack.alertmanager import Alertmanager, alertmanager_available
from devstack.procs import free_port
from devstack.rabbitmq import RabbitMQ
from services.ingest.app import build_app
from shared.config import Settings
from shared.fingerprint import label_fingerprint
from tests.conftest import running
from tests.ingest.webhooks import WEBHOOK, AlertTap, notification, received

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not alertmanager_available(), reason="apt-get install prometheus-alertmanager"),
]

TOKEN = "am-" + secrets.token_hex(8)


def alertmanager_config(ingest_port: int) -> str:
    # group_interval 1s: a failed notification is tried again within a second or two of the broker's return;
    # repeat_interval 1h: a delivered alert is not sent again during the test, so "exactly once" is meaningful.
    return f"""
route:
  receiver: vigil
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: vigil
    webhook_configs:
      - url: http://127.0.0.1:{ingest_port}{WEBHOOK}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {TOKEN}
"""


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vigil-ingest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ingest_settings(amqp_url: str, state_dir: Path) -> Settings:
    return Settings(
        amqp_url=amqp_url,
        state_dir=state_dir,
        ingest_port=free_port(),
        ingest_token=TOKEN,
        publish_timeout_s=2,
    )


async def started_alertmanager(base: Path, ingest_port: int) -> Alertmanager:
    manager = Alertmanager(base / "alertmanager", free_port(), alertmanager_config(ingest_port))
    await asyncio.to_thread(manager.start)
    return manager


async def wait_ready(url: str, *, broker: bool, within: float = 60) -> None:
    async with aiohttp.ClientSession() as http:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            async with http.get(url + "/readyz") as resp:
                if (await resp.json())["checks"].get("broker") is broker:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"ingest's broker check never became {broker}")


def api_alert(name: str, instance: str, **extra: str) -> dict[str, object]:
    return {
        "labels": {"alertname": name, "instance": instance, "severity": "critical", "job": "node"},
        "annotations": {"summary": f"{name} on {instance}", "runbook": "https://runbooks/x?a=1&b=<2>"},
        "startsAt": "2026-11-25T09:30:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0",
        **extra,
    }


async def test_real_alertmanager_delivers_alerts_intact(amqp_url: str, scratch: Path) -> None:
    settings = ingest_settings(amqp_url, scratch)
    async with running(build_app(settings), settings.ingest_port) as url, AlertTap(amqp_url) as tap:
        await wait_ready(url, broker=True)
        manager = await started_alertmanager(scratch, settings.ingest_port)
        try:
            sent = [api_alert("HostDown", "db1:9100"), api_alert("DiskFull", "db2:9100")]
            await asyncio.to_thread(manager.post_alerts, sent)
            firing = await tap.take(2, within=30, settle=1.5)
            # Resolve one: Alertmanager sends it again with status resolved (send_resolved).
            ended = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            await asyncio.to_thread(manager.post_alerts, [api_alert("HostDown", "db1:9100", endsAt=ended)])
            resolved = await tap.take(1, within=30, settle=1.5)
        finally:
            await asyncio.to_thread(manager.stop)

    # Grouped by alertname and instance: one notification each, on `alerts.alertmanager`.
    assert [m.routing_key for m in firing] == ["alerts.alertmanager"] * 2
    for data in received(firing):
        original = next(a for a in sent if a["labels"] == data.alert.labels)
        assert data.alert.annotations == original["annotations"]
        assert data.alert.generator_url == original["generatorURL"]
        assert data.alert.starts_at == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
        assert data.alert.fingerprint == label_fingerprint(data.alert.labels)
        assert data.sender == "alertmanager" and data.receiver == "vigil"
        assert data.group_labels == {
            "alertname": data.alert.labels["alertname"],
            "instance": original["labels"]["instance"],
        }
        labels = data.alert.labels
        assert data.group_key.endswith(f'{{alertname="{labels["alertname"]}", instance="{labels["instance"]}"}}')
    [gone] = received(resolved)
    assert gone.alert.status == "resolved"
    assert gone.alert.labels["instance"] == "db1:9100" and gone.alert.ends_at is not None


async def test_broker_outage_gives_503_and_alertmanager_retry_delivers_exactly_once(scratch: Path) -> None:
    # A node of this test's own: stopping the session's broker would break every other test.
    (scratch / "rabbitmq").mkdir()
    node = RabbitMQ(scratch / "rabbitmq", free_port(), free_port(), secrets.token_hex(12))
    await asyncio.to_thread(node.start)
    manager: Alertmanager | None = None
    try:
        settings = ingest_settings(node.url(), scratch)
        async with running(build_app(settings), settings.ingest_port) as url, aiohttp.ClientSession() as http:
            await wait_ready(url, broker=True)
            async with AlertTap(node.url()):
                pass  # declares the durable tap queue; it outlives the restart
            manager = await started_alertmanager(scratch, settings.ingest_port)

            await asyncio.to_thread(node.stop)
            await wait_ready(url, broker=False)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(url + WEBHOOK, json=notification(_direct_alert()), headers=headers) as resp:
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) > 0
                assert (await resp.json())["error"] == "broker_unavailable"

            sent = api_alert("BackupFailed", "nas:9100", severity="warning")
            sent["labels"] = {**sent["labels"], "severity": "warning"}  # type: ignore[dict-item]
            await asyncio.to_thread(manager.post_alerts, [sent])
            # Alertmanager tries, gets 503, and keeps trying (it retries 5xx only).
            await _wait_for_503s(http, url, at_least=3)

            await asyncio.to_thread(node.start)
            await wait_ready(url, broker=True)
            async with AlertTap(node.url()) as tap:
                delivered = await tap.take(1, within=60, settle=4)
    finally:
        if manager is not None:
            await asyncio.to_thread(manager.stop)
        await asyncio.to_thread(node.stop)

    assert len(delivered) == 1, [m.body for m in delivered]
    [data] = received(delivered)
    assert delivered[0].routing_key == "alerts.alertmanager"
    assert data.alert.labels == sent["labels"]
    assert data.alert.annotations == sent["annotations"]
    assert data.alert.generator_url == sent["generatorURL"]
    assert data.alert.starts_at == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert data.alert.fingerprint == label_fingerprint(sent["labels"])  # type: ignore[arg-type]


def _direct_alert() -> dict[str, object]:
    from tests.ingest.webhooks import am_alert

    return am_alert("Direct")


async def _wait_for_503s(http: aiohttp.ClientSession, url: str, *, at_least: int, within: float = 60) -> None:
    """Until ingest has answered the webhook with 503 `at_least` times (the direct post counts as one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    key = 'vigil_ingest_requests_total{code="503",endpoint="alertmanager"}'
    start = None
    while loop.time() < deadline:
        async with http.get(url + "/metrics") as resp:
            text = await resp.text()
        count = next((float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(key)), 0.0)
        start = count if start is None else start
        if count - start >= at_least - 1:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("Alertmanager did not retry against the 503s")
