"""The formats the reporter stores per incident report version, rendered from one IncidentReport (CPU only, no I/O).

Every version is offered as Markdown, XLSX and JSON (`FORMATS`, what `report.ready` lists), but only Markdown and JSON
are stored (`render_all`). The JSON is the whole content model, so the web renders a version's XLSX from it when it is
first downloaded (`incident_xlsx.render_stored_json`): the same bytes, and openpyxl, four fifths of a rendering's CPU,
runs for the workbooks someone opens instead of for each of the thousands of versions a storm stores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from prometheus_client import Counter

from shared.reports import incident_json, incident_markdown
from shared.reports.incident_content import build
from shared.reports.incident_report import IncidentReport

FORMATS = ("md", "xlsx", "json")
STORED_FORMATS = ("md", "json")

# One metric for both renderers: the reporter counts what it stores (md, json), the web each report it renders for a
# download (an XLSX from a stored version, or any format of an incident with no stored version yet).
RENDERED = Counter("vigil_reports_rendered_total", "Incident reports rendered, by format", ["format"])


@dataclass(frozen=True)
class Rendered:
    format: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def render_all(report: IncidentReport) -> dict[str, Rendered]:
    """The formats stored per version (`STORED_FORMATS`)."""
    content = build(report)
    return {
        "md": Rendered("md", incident_markdown.render_content(content).encode()),
        "json": Rendered("json", incident_json.to_bytes(incident_json.render_content(content))),
    }
