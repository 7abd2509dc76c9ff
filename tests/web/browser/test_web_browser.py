"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright), end to end: alerts go
through the real correlator into incidents; a person logs in, filters, opens one, acknowledges it and sees
the state change arrive live, downloads every report, and the pages work at a phone's width.

Screenshots land in the test artifacts directory (web-list.png, web-incident.png, web-list-phone.png).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from psycopg.types.json import Jsonb

from services.correlator.app import build_app as build_correlator
from shared.config import Settings
from shared.contracts import ALERTS_EXCHANGE, AlertReceived, AlertSource, Envelope, WebhookAlert, alert_routing_key
from shared.messaging import Broker
from tests.conftest import running
from tests.web.webapp import PASSWORDS, RESPONDER_TOKEN, Web, serve_web, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RULES = """
rules:
  - name: default
    group_by: [$host]
    title: "{{ alertname }} on {{ host }}"
"""


def alert(alertname: str, host: str, severity: str, annotations: dict[str, str]) -> Envelope[AlertReceived]:
    now = datetime.now(UTC)
    webhook_alert = WebhookAlert(
        status="firing",
        labels={"alertname": alertname, "severity": severity, "instance": f"{host}:9100", "job": "node"},
        annotations=annotations,
        startsAt=now - timedelta(minutes=2),
        generatorURL="http://prometheus.example:9090/graph?g0.expr=up%3D%3D0",
    )
    data = AlertReceived(alert=webhook_alert, source=AlertSource.alertmanager, sender="alertmanager", received_at=now)
    return Envelope(type="alert.received", producer="test", data=data)


@dataclass
class System:
    web: Web
    publisher: Broker

    async def fire(self, alertname: str, host: str, severity: str = "critical", **annotations: str) -> None:
        envelope = alert(alertname, host, severity, annotations)
        await self.publisher.publish(ALERTS_EXCHANGE, alert_routing_key("firing", severity, alertname), envelope)

    async def enrich(self, key: str) -> None:
        """Store a context as the enricher would (a reader's test: the enricher has its own)."""
        now = datetime.now(UTC)
        points = [
            ((now + timedelta(minutes=m)).isoformat(), 40 + (m % 9) * 6 + (45 if m > -3 else 0)) for m in range(-60, 1)
        ]
        context = {
            "incident_key": key,
            "window_start": (now - timedelta(hours=1)).isoformat(),
            "window_end": (now + timedelta(minutes=1)).isoformat(),
            "generated_at": now.isoformat(),
            "complete": True,
            "metrics": [{"name": "cpu", "query": 'rate(node_cpu_seconds_total{mode!="idle"}[5m])',
                         "labels": {}, "unit": "%", "points": points, "peak": 97.5,
                         "peak_at": (now - timedelta(minutes=2)).isoformat()}],
            "timeline": [
                {"at": (now - timedelta(minutes=4)).isoformat(), "kind": "log_burst",
                 "title": "Error log burst <b>nginx</b>", "detail": {"errors": 120}},
                {"at": (now - timedelta(minutes=2)).isoformat(), "kind": "metric_peak",
                 "title": "cpu peaked at 97.5 %", "detail": {"series": "cpu"}},
            ],
            "logs": [{"at": now.isoformat(), "labels": {"job": "nginx"}, "line": "upstream timed out <script>"}],
            "log_lines_total": 1,
            "security_events": [{"at": now.isoformat(), "action": "ban", "ip": "203.0.113.7", "jail": "sshd"}],
        }  # fmt: skip
        async with await psycopg.AsyncConnection.connect(self.web.settings.database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO enrichments (incident_id, incident_revision, complete, context)"
                " SELECT id, revision, true, %s FROM incidents WHERE key = %s",
                (Jsonb(context), key),
            )

    async def incident_key(self, host: str) -> str:
        async with self.web.client(RESPONDER_TOKEN) as client:
            for _ in range(200):
                items = (await client.get(f"/api/v1/incidents?host={host}")).json()["items"]
                if items:
                    return str(items[0]["key"])
                await asyncio.sleep(0.05)
        raise AssertionError(f"no incident for {host}")


@pytest.fixture
async def system(settings: Settings, tmp_path: Path) -> AsyncIterator[System]:
    rules = tmp_path / "correlation.yml"
    rules.write_text(RULES)
    settings = web_settings(settings, tmp_path, correlation_rules=rules)
    correlator = build_correlator(settings, sweep_interval_s=3600)
    publisher = Broker(settings.amqp_url, producer="test")
    await publisher.start()
    await asyncio.wait_for(publisher.wait_connected(), 30)
    try:
        async with running(correlator, settings.correlator_port) as correlator_url, serve_web(settings) as web:
            async with httpx.AsyncClient() as client:
                for _ in range(200):
                    if (await client.get(f"{correlator_url}/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
            yield System(web, publisher)
    finally:
        await publisher.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_in(page: Page, base: str, user: str = "alice") -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login?next=%2F")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORDS[user])
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{base}/")


async def download(page: Page, selector: str, target: Path) -> bytes:
    async with page.expect_download() as info:
        await page.click(selector)
    saved = await info.value
    await saved.save_as(target)
    return await asyncio.to_thread(target.read_bytes)


async def test_responder_works_an_incident_in_the_browser(
    system: System, browser: Browser, artifacts_dir: Path, tmp_path: Path
) -> None:
    base = system.web.url
    await system.fire("HostDown", "web-1", summary="web-1 does not answer <script>alert('xss')</script>")
    await system.fire("DiskFull", "db-1", severity="warning", summary="disk 95% on db-1")
    first = await system.incident_key("web-1")
    await system.incident_key("db-1")
    await system.enrich(first)

    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/New_York", accept_downloads=True
    )
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    await log_in(page, base)

    rows = page.locator("table.incidents tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#live-status")).to_have_text("● live")
    # A new incident appears on the open list without a reload, through the live stream.
    await system.fire("Http5xx", "web-2", severity="error", summary="5xx ratio above 5%")
    await expect(rows).to_have_count(3, timeout=15_000)
    await expect(rows.first).to_contain_text("Http5xx on web-2")
    await expect(page.locator('[data-count="all"]')).to_have_text("3")
    await expect(page.locator('[data-count="open"]')).to_have_text("3")
    await page.screenshot(path=str(artifacts_dir / "web-list.png"), full_page=True)

    # Filter by host, then by severity: the URL keeps the filters, the list narrows.
    await page.get_by_text("Filters").click()
    await page.get_by_label("Host").fill("db-1")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(f"{base}/?state=&severity=&host=db-1&alertname=&matcher=&q=&since=&until=")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("DiskFull on db-1")
    await page.goto(f"{base}/?severity=critical")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(first)

    # Times are shown in the viewer's zone, with UTC on hover.
    opened = page.locator("td.opened time").first
    assert "UTC" not in (await opened.inner_text())
    assert (await opened.get_attribute("title") or "").endswith("UTC")

    await page.get_by_role("link", name=first).click()
    await expect(page).to_have_url(f"{base}/incidents/{first}")
    await expect(page.locator("h1")).to_have_text("HostDown on web-1")
    await expect(page.locator("#state")).to_have_text("open")
    # The enricher's context: a chart with the alert's start marked, logs and security events, all as text.
    await expect(page.locator("svg.chart")).to_have_count(1)
    await expect(page.locator("svg.chart line.alert-start")).to_have_count(1)
    # Its own peak and the log burst are marked on it; the page's timeline merges the enricher's events in.
    await expect(page.locator("svg.chart line.metric-peak")).to_have_count(1)
    await expect(page.locator("svg.chart line.log-burst")).to_have_count(1)
    linked = page.locator("ol.timeline li.tl-linked")
    await expect(linked).to_have_count(2)
    await expect(linked.first).to_contain_text("Error log burst <b>nginx</b>")
    await expect(linked.nth(1)).to_contain_text("cpu peaked at 97.5 %")
    await page.locator("section[aria-labelledby=h-metrics]").screenshot(path=str(artifacts_dir / "web-chart-marks.png"))
    await expect(page.locator("pre.logs")).to_contain_text("upstream timed out <script>")
    await expect(page.locator("table.security")).to_contain_text("203.0.113.7")
    # The annotation's markup is shown as text, never run.
    await expect(page.locator("td.annotations")).to_contain_text("<script>alert('xss')</script>")

    await page.get_by_role("button", name="Acknowledge").click()
    await expect(page).to_have_url(f"{base}/incidents/{first}?sent=acknowledge")
    # The correlator applies the command and announces it; the page learns it live.
    await expect(page.locator("#state")).to_have_text("acknowledged", timeout=15_000)
    await page.reload()
    await expect(page.locator("#state")).to_have_text("acknowledged")
    await expect(page.locator("ol.timeline")).to_contain_text("Acknowledged by alice")

    await page.get_by_label("Add a comment").fill("restarted the <b>node</b>")
    await page.get_by_role("button", name="Comment").click()
    await expect(page).to_have_url(f"{base}/incidents/{first}?sent=comment")
    for _ in range(50):
        await page.reload()
        if "restarted the <b>node</b>" in await page.locator("ol.timeline").inner_text():
            break
        await asyncio.sleep(0.2)
    await expect(page.locator("ol.timeline")).to_contain_text("restarted the <b>node</b>")
    await page.screenshot(path=str(artifacts_dir / "web-incident.png"), full_page=True)

    md = await download(page, "#dl-md", tmp_path / "report.md")
    assert first.encode() in md and b"HostDown" in md
    xlsx = await download(page, "#dl-xlsx", tmp_path / "report.xlsx")
    assert xlsx[:2] == b"PK"
    report = json.loads(await download(page, "#dl-json", tmp_path / "report.json"))
    assert first in json.dumps(report)

    await page.get_by_role("link", name="Audit").click()
    today = datetime.now(UTC).date()
    await page.get_by_label("From (UTC, inclusive)").fill(str(today - timedelta(days=1)))
    await page.get_by_label("To (UTC, exclusive)").fill(str(today + timedelta(days=1)))
    audit_md = await download(page, "#audit-md", tmp_path / "audit.md")
    assert first.encode() in audit_md
    audit_xlsx = await download(page, "#audit-xlsx", tmp_path / "audit.xlsx")
    assert audit_xlsx[:2] == b"PK"
    audit_json = json.loads(await download(page, "#audit-json", tmp_path / "audit.json"))
    assert first in [i["key"] for i in audit_json["incidents"]]
    funnel = audit_json["noise"]["funnel"]
    assert funnel["notifications"] >= funnel["occurrences"] >= funnel["incidents"] >= 1

    assert dialogs == []
    await context.close()


async def test_phone_width_and_keyboard(system: System, browser: Browser, artifacts_dir: Path) -> None:
    base = system.web.url
    await system.fire("HostDown", "a-rather-long-host-name-for-a-small-screen-01", summary="down")
    key = await system.incident_key("a-rather-long-host-name-for-a-small-screen-01")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await log_in(page, base, "victor")
    await expect(page.locator("table.incidents tbody tr")).to_have_count(1)
    await page.screenshot(path=str(artifacts_dir / "web-list-phone.png"), full_page=True)
    overflow: Any = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390, f"the list scrolls sideways on a phone: {overflow}px wide"

    # The first Tab lands on the skip link, Enter moves focus to the content; the incident is a Tab away.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == key:
            break
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{base}/incidents/{key}")
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)  # victor is a viewer
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390, f"the incident page scrolls sideways on a phone: {overflow}px wide"
    await context.close()
