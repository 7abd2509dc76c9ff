"""The incident report as a JSON document (docs/report-schema.json): the same content as the Markdown and XLSX."""

from __future__ import annotations

import json
from typing import Any

from shared.reports.incident_content import IncidentContent, build
from shared.reports.incident_report import IncidentReport


def render_content(content: IncidentContent) -> dict[str, Any]:
    return content.model_dump(mode="json")


def render(report: IncidentReport) -> dict[str, Any]:
    """The documented export: times are ISO 8601 in UTC, durations in seconds."""
    return render_content(build(report))


def to_bytes(document: dict[str, Any]) -> bytes:
    """Canonical bytes of the export (sorted keys, no spaces), so equal reports hash equal."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def schema() -> dict[str, Any]:
    """The JSON Schema of the export, as published in docs/report-schema.json (generated from the models)."""
    document = IncidentContent.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://vigil.invalid/schemas/incident-report-1.json",
        **document,
        "title": "Vigil incident report",
        "description": (
            "Per-incident export with the same content as the Markdown and XLSX reports. Times are ISO 8601 in UTC, "
            "durations in seconds. Additive changes keep schema_version; any other change bumps it."
        ),
    }
