"""The enricher's part of an incident's signature (services/enricher/signature.py): which lines of a context give
its log templates. Pure: contexts built here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.enricher.config import load_config
from services.enricher.signature import ERROR_WORDS, burst_lines, log_signature
from shared.incident_context import IncidentContext, LogBurst, LogLine, UpstreamStatus

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
LOKI = load_config(Path("deploy/enrichment.yml")).loki  # bursts: at least 5 errors and 3x the window's median


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def context(lines: list[tuple[float, str]], *, loki_ok: bool = True) -> IncidentContext:
    """An hour's window with a two-minute burst at minutes 30 and 31 (40 and 25 errors), quiet minutes around it."""
    return IncidentContext(
        incident_key="INC-000001",
        window_start=at(0),
        window_end=at(60),
        generated_at=at(61),
        complete=loki_ok,
        upstreams=[UpstreamStatus(name="loki", ok=loki_ok, queries=3, failed=0 if loki_ok else 1)],
        logs=[LogLine(at=at(minute), labels={"host": "web-1"}, line=line) for minute, line in reversed(lines)],
        error_bursts=[
            LogBurst(minute=at(10), errors=1),
            LogBurst(minute=at(30), errors=40),
            LogBurst(minute=at(31), errors=25),
            LogBurst(minute=at(45), errors=2),
        ],
    )


def test_the_lines_inside_burst_minutes_are_taken_error_lines_first() -> None:
    lines = [
        (10.5, "ERROR before the burst 1"),  # an error minute, but no burst
        (29.99, "ERROR just before 2"),
        (30.0, "ERROR db timeout after 500ms"),
        (30.5, "GET /health 200"),  # no error word: left out while the burst has error lines
        (31.9, "FATAL worker 7 crashed"),
        (32.0, "ERROR just after 3"),
    ]
    assert burst_lines(context(lines), LOKI) == ["FATAL worker 7 crashed", "ERROR db timeout after 500ms"]
    assert log_signature(context(lines), LOKI) == ["ERROR db timeout after <num>ms", "FATAL worker <num> crashed"]


def test_a_burst_without_error_words_gives_all_its_lines() -> None:
    lines = [(30.2, "level=e msg=boom 1"), (31.2, "level=e msg=boom 2"), (40.0, "level=e msg=later")]
    assert log_signature(context(lines), LOKI) == ["level=e msg=boom <num>"]


def test_no_burst_or_no_loki_answer_gives_no_template_or_none() -> None:
    quiet = context([(30.5, "ERROR x")]).model_copy(update={"error_bursts": [LogBurst(minute=at(30), errors=2)]})
    assert log_signature(quiet, LOKI) == []
    # Loki did not answer: the templates an earlier context gave stay (None: nothing to replace them with).
    assert log_signature(context([(30.5, "ERROR x")], loki_ok=False), LOKI) is None


def test_the_error_words_are_the_deploy_errors_query_words() -> None:
    errors_query = load_config(Path("deploy/enrichment.yml")).loki.errors or ""
    assert ERROR_WORDS.pattern.removeprefix("(?i)\\b(").removesuffix(")\\b") in errors_query
    assert ERROR_WORDS.search("Connection FAILED") and not ERROR_WORDS.search("fail2ban started")
