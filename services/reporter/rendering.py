"""All three formats of one incident report, rendered from one IncidentReport (CPU only, no I/O)."""

from __future__ import annotations

from services.reporter import incident_json, incident_markdown, incident_xlsx
from services.reporter.incident_content import build
from services.reporter.incident_report import IncidentReport
from services.reporter.versions import Rendered


def render_all(report: IncidentReport) -> dict[str, Rendered]:
    content = build(report)
    return {
        "md": Rendered("md", incident_markdown.render_content(content).encode()),
        "xlsx": Rendered("xlsx", incident_xlsx.render_content(content)),
        "json": Rendered("json", incident_json.to_bytes(incident_json.render_content(content))),
    }
