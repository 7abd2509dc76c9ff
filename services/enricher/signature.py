"""The enricher's part of an incident's signature (shared/signatures.py): the templates of the log lines in its error
bursts. Pure: from the context it computed and its config.

The lines are those of the context's excerpt (the newest `line_limit` lines of the incident's hosts) that fall in a
burst minute, found exactly as the linked timeline finds them. The errors query counts only error lines, the excerpt
keeps every line: of the lines in a burst, those with an error word are taken (the words of deploy/enrichment.yml's
errors query), or all of them when none has one (an errors query that tells errors apart some other way, by a
`level` label say). A burst older than the excerpt's oldest line gives no template.
"""

from __future__ import annotations

import re
from datetime import timedelta

from services.enricher.config import LokiConfig
from services.enricher.timeline import find_bursts
from shared.incident_context import IncidentContext
from shared.signatures import log_templates

ERROR_WORDS = re.compile(r"(?i)\b(errors?|failed|failure|fatal|panic|crit|critical|emerg)\b")


def burst_lines(context: IncidentContext, loki: LokiConfig) -> list[str]:
    """The excerpt's lines inside the context's error bursts (error lines, if any of them is one)."""
    window_minutes = max(round((context.window_end - context.window_start).total_seconds() / 60), 1)
    bursts = find_bursts(
        context.error_bursts,
        window_minutes=window_minutes,
        min_errors=loki.burst_min_errors,
        factor=loki.burst_factor,
    )
    spans = [(burst.start, burst.start + timedelta(minutes=burst.minutes)) for burst in bursts]
    inside = [log.line for log in context.logs if any(start <= log.at < end for start, end in spans)]
    errors = [line for line in inside if ERROR_WORDS.search(line)]
    return errors or inside


def log_signature(context: IncidentContext, loki: LokiConfig) -> list[str] | None:
    """The templates the enricher stores as the incident's `log` tokens, the most frequent first; None when Loki did
    not answer every query: a context without its logs says nothing about them, so the templates stored with an
    earlier context stay."""
    if any(upstream.name == "loki" and not upstream.ok for upstream in context.upstreams):
        return None
    return log_templates(burst_lines(context, loki))
