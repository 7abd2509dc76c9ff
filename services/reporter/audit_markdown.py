"""The period audit as Markdown (same escaping environment as the incident report)."""

from __future__ import annotations

from services.reporter.audit import AuditReport
from services.reporter.incident_markdown import ENV


def render(audit: AuditReport) -> str:
    return ENV.get_template("audit.md.j2").render(a=audit)
