"""The period audit as Markdown (same escaping environment as the incident report), written as it is rendered."""

from __future__ import annotations

import io
from typing import BinaryIO

from shared.reports.audit import TOP_MISSED, AuditReport
from shared.reports.incident_markdown import ENV


def write(audit: AuditReport, out: BinaryIO) -> None:
    """Render into `out` (a file or any writable binary stream) piece by piece: the text is never whole in memory."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        for piece in ENV.get_template("audit.md.j2").generate(a=audit, top_missed=TOP_MISSED):
            text.write(piece)
        text.flush()
    finally:
        text.detach()  # `out` stays open: it is the caller's


def render(audit: AuditReport) -> str:
    out = io.BytesIO()
    write(audit, out)
    return out.getvalue().decode()
