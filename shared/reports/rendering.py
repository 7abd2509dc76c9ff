"""All three formats of one incident report, rendered from one IncidentReport (CPU only, no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.reports import incident_json, incident_markdown, incident_xlsx
from shared.reports.incident_content import build
from shared.reports.incident_report import IncidentReport


@dataclass(frozen=True)
class Rendered:
    format: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def render_all(report: IncidentReport) -> dict[str, Rendered]:
    content = build(report)
    return {
        "md": Rendered("md", incident_markdown.render_content(content).encode()),
        "xlsx": Rendered("xlsx", incident_xlsx.render_content(content)),
        "json": Rendered("json", incident_json.to_bytes(incident_json.render_content(content))),
    }
