"""Maintenance windows through the web API, and a window made there applying in the correlator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from tests.correlator.harness import T0, alert_envelope, correlator, count_is
from tests.web.webapp import READONLY_TOKEN, RESPONDER_TOKEN, serve_web, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

WINDOW: dict[str, Any] = {
    "name": "web-reboot",
    "matchers": ['instance=~"web-.*"'],
    "start": (T0 - timedelta(minutes=5)).isoformat(),
    "end": (T0 + timedelta(minutes=30)).isoformat(),
}


async def test_windows_are_created_listed_and_deleted_by_responders(settings: Settings, tmp_path: Path) -> None:
    async with serve_web(web_settings(settings, tmp_path)) as web:
        async with web.client(READONLY_TOKEN) as viewer:
            assert (await viewer.post("/api/v1/maintenance", json=WINDOW)).status_code == 403
            assert (await viewer.delete("/api/v1/maintenance/1")).status_code == 403
        async with web.client() as anonymous:
            assert (await anonymous.get("/api/v1/maintenance")).status_code == 401
        async with web.client(RESPONDER_TOKEN) as client:
            made = await client.post("/api/v1/maintenance", json=WINDOW)
            assert made.status_code == 201, made.text
            body = made.json()
            assert body["name"] == "web-reboot" and body["start"] == "2026-11-02T09:55:00Z"
            assert body["matchers"] == ['instance=~"web-.*"'] and body["created_by"] == "api-token"
            weekly = {
                "name": "backups",
                "matchers": ["job=backup"],
                "weekly": {"days": ["sat"], "start": "02:00", "duration": "2h", "timezone": "Europe/Berlin"},
            }
            assert (await client.post("/api/v1/maintenance", json=weekly)).status_code == 201
            again = await client.post("/api/v1/maintenance", json=WINDOW)
            assert again.status_code == 409 and again.json()["errors"][0]["field"] == "name"
            bad = await client.post("/api/v1/maintenance", json={**WINDOW, "name": "x", "end": "2026-11-02T09:00"})
            assert bad.status_code == 422 and "end: " in bad.json()["message"] and "time zone" in bad.json()["message"]
            assert (await client.post("/api/v1/maintenance", content=b"[")).status_code == 422
            async with web.client(READONLY_TOKEN) as viewer:
                listed = (await viewer.get("/api/v1/maintenance")).json()["items"]
            assert [w["name"] for w in listed] == ["web-reboot", "backups"]
            assert listed[1]["weekly"] == {
                "days": ["sat"],
                "start": "02:00",
                "duration": "2h",
                "timezone": "Europe/Berlin",
            }
            assert (await client.delete(f"/api/v1/maintenance/{body['id']}")).status_code == 204
            assert (await client.delete(f"/api/v1/maintenance/{body['id']}")).status_code == 404
            assert (await client.delete("/api/v1/maintenance/nope")).status_code == 404
            assert [w["name"] for w in (await client.get("/api/v1/maintenance")).json()["items"]] == ["backups"]


async def test_a_window_made_through_the_api_marks_the_incidents_opened_in_it(
    settings: Settings, tmp_path: Path
) -> None:
    async with serve_web(web_settings(settings, tmp_path)) as web, web.client(RESPONDER_TOKEN) as client:
        assert (await client.post("/api/v1/maintenance", json=WINDOW)).status_code == 201
        async with correlator(settings, tmp_path) as h:
            await h.send(alert_envelope(host="web-1", starts_at=T0), alert_envelope(host="db-1", starts_at=T0))
            await h.settled(await count_is(h, 2))
            keys = {i["hosts"][0]: i["key"] for i in await h.incidents()}
        planned = (await client.get(f"/api/v1/incidents/{keys['web-1']}")).json()
        real = (await client.get(f"/api/v1/incidents/{keys['db-1']}")).json()
        listed = {i["key"]: i["maintenance"] for i in (await client.get("/api/v1/incidents")).json()["items"]}
        report = (await client.get(f"/api/v1/incidents/{keys['web-1']}/report.json")).json()
    assert planned["maintenance"] == "web-reboot" and real["maintenance"] is None
    assert listed == {keys["web-1"]: "web-reboot", keys["db-1"]: None}
    assert report["summary"]["maintenance"] == "web-reboot"
