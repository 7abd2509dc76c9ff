"""The per-incident JSON export: the same content as the other formats, and exactly the documented schema.

Regenerate docs/report-schema.json deliberately:
VIGIL_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/reporter/test_report_json.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg

from shared.reports import incident_json, incident_report
from shared.reports.incident_content import IncidentContent
from tests.reporter.report_seed import KEY, seed_incident

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"


def test_published_schema_is_the_one_the_code_produces() -> None:
    generated = json.dumps(incident_json.schema(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("VIGIL_UPDATE_GOLDEN") == "1":
        SCHEMA_FILE.write_text(generated)
    assert SCHEMA_FILE.read_text() == generated, "docs/report-schema.json is stale"


async def test_export_carries_the_report_content(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_incident(conn)
    report = await incident_report.load(conn, KEY)
    assert report is not None
    document = incident_json.render(report)

    # It parses back through the schema's own model, losslessly, and has every required field the schema lists.
    assert IncidentContent.model_validate(document).model_dump(mode="json") == document
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(schema["required"]) <= set(document)

    summary = document["summary"]
    assert summary["key"] == KEY and summary["state"] == "resolved"
    assert summary["opened_at"] == "2026-11-01T03:00:00Z"
    assert summary["duration_seconds"] == 42 * 60
    assert summary["time_to_acknowledge_seconds"] == 7 * 60
    assert [a["alertname"] for a in document["alerts"]] == ["HostDown", "HighLatency", "HighLatency"]
    assert document["alerts"][0]["duration_seconds"] == 40 * 60
    assert [m["name"] for m in document["metrics"]] == ["cpu", "memory | rss"]
    assert document["metrics"][0]["peak_at"] == "2026-11-01T03:30:00Z"
    assert document["logs"]["lines_total"] == 1234
    assert document["security_events"][0]["ip"] == "203.0.113.9"
    advice = {r["alertname"]: r for r in document["recommendations"]}
    assert advice["HostDown"]["actions"] == ["Check power and network", "Restart node_exporter"]
    assert advice["HighLatency"]["alerts"] == 2 and advice["HighLatency"]["summaries"] == ["p99 latency above 2s"]
    assert {link["kind"] for link in document["links"]} == {"source", "runbook"}
    assert document["enrichment"]["complete"] is False
    kinds = [t["kind"] for t in document["timeline"]]
    assert kinds[0] == "metric_deviation" and "comment" in kinds and kinds[-1] == "incident_resolved"

    # Canonical bytes: equal reports hash equal, and the bytes stored before orjson wrote them (a version stored then
    # and the same report rendered now hash equal: no new version for nothing).
    assert incident_json.to_bytes(document) == incident_json.to_bytes(incident_json.render(report))
    assert (
        incident_json.to_bytes(document)
        == json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    )


async def test_silence_links_need_the_alertmanager_url(conn: psycopg.AsyncConnection[Any]) -> None:
    await seed_incident(conn, hostile=True)
    report = await incident_report.load(conn, KEY, alertmanager_url="https://am.example/")
    assert report is not None
    links = incident_json.render(report)["links"]
    silences = [link["url"] for link in links if link["kind"] == "silence"]
    assert len(silences) == 2  # one per alert name
    assert all(url.startswith("https://am.example/#/silences/new?filter=%7Balertname%3D%22") for url in silences)
    # HighLatency fired on two hosts: its silence matches the labels both alerts share, not one host's.
    high_latency = next(u["url"] for u in links if u["kind"] == "silence" and u["alertname"] == "HighLatency")
    assert unquote(high_latency.split("filter=")[1]) == '{alertname="HighLatency",job="nginx"}'
    # The `javascript:` generator URL of the hostile alert is not offered as a link at all.
    assert not [link for link in links if link["url"].startswith("javascript")]
