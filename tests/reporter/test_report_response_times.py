"""Response times per severity and per rule in the period audit, response targets (the file and the misses), and
both formats; the figures are checked against known answers and recomputed in Python from the stored rows."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from markdown_it import MarkdownIt

from services.web.app import build_app
from shared.config import ConfigError, Settings
from shared.contracts import severity_rank
from shared.reports import audit, audit_markdown, audit_xlsx
from shared.reports.response_targets import (
    NO_TARGETS,
    Miss,
    ResponseTargets,
    Target,
    TargetsError,
    load_targets,
    misses,
    parse_duration,
    parse_targets,
)
from tests.reporter.markdown_tables import tables
from tests.seed import insert_incident

MIN = 60.0
TARGETS = ResponseTargets(
    {
        "critical": Target(acknowledge=timedelta(minutes=5), resolve=timedelta(hours=1)),
        "warning": Target(acknowledge=timedelta(minutes=30)),
    }
)

# --- the targets file, without I/O -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172_800), ("1d2h3m4s", 93_784), (" 4h ", 14_400), (600, 600)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text, "x") == timedelta(seconds=seconds)


def test_targets_parse_with_severities_in_lower_case_and_either_target() -> None:
    parsed = parse_targets(
        {"targets": {"Critical": {"acknowledge": "5m", "resolve": "1h"}, "warning": {"acknowledge": "30m"}}}
    )
    assert parsed == TARGETS
    assert parsed.for_severity("CRITICAL") == TARGETS.by_severity["critical"] and parsed.for_severity("info") is None
    assert [
        name for name, _ in parse_targets({"targets": {"info": {"resolve": "1d"}, "error": {"resolve": 60}}}).ordered()
    ] == [
        "error",
        "info",
    ]
    assert parse_targets(None) == NO_TARGETS and not parse_targets({"targets": None})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "expected a mapping with `targets`"),
        ({"target": {}}, "target: unknown key"),
        ({"targets": ["critical"]}, "targets: expected a mapping of severity"),
        (
            {"targets": {"critcal": {"acknowledge": "5m"}}},
            "targets.critcal: unknown severity; expected one of critical",
        ),
        ({"targets": {"critical": "5m"}}, "targets.critical: expected a mapping with acknowledge and/or resolve"),
        ({"targets": {"critical": {}}}, "targets.critical: expected a mapping with acknowledge and/or resolve"),
        ({"targets": {"critical": {"ack": "5m"}}}, "targets.critical.ack: unknown target; expected acknowledge"),
        (
            {"targets": {"critical": {"acknowledge": "5 minutes"}}},
            "targets.critical.acknowledge: expected a duration like 5m, 1h30m or 2d; got '5 minutes'",
        ),
        ({"targets": {"warning": {"resolve": "1m1h"}}}, "targets.warning.resolve: expected a duration"),
        ({"targets": {"warning": {"resolve": "0m"}}}, "targets.warning.resolve: must be longer than 0s"),
        ({"targets": {"warning": {"resolve": True}}}, "targets.warning.resolve: expected a duration"),
        ({"targets": {"warning": {"resolve": "5m"}, "WARNING": {"resolve": "5m"}}}, "targets.WARNING: listed twice"),
    ],
)
def test_targets_errors_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(TargetsError) as caught:
        parse_targets(raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_targets_file_errors_name_the_file(tmp_path: Path) -> None:
    assert load_targets(None) == NO_TARGETS
    with pytest.raises(TargetsError, match="cannot read"):
        load_targets(tmp_path / "missing.yml")
    bad = tmp_path / "targets.yml"
    bad.write_text("targets: {critical: [\n")
    with pytest.raises(TargetsError, match=f"{bad}: not valid YAML"):
        load_targets(bad)
    bad.write_text("targets:\n  critical: {acknowledge: soon}\n")
    with pytest.raises(TargetsError, match=f"{bad}: targets.critical.acknowledge: expected a duration"):
        load_targets(bad)
    assert load_targets(Path("deploy/response-targets.example.yml")).for_severity("critical") == Target(
        timedelta(minutes=5), timedelta(hours=1)
    )


def test_a_bad_targets_file_stops_the_web_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "targets.yml"
    bad.write_text("targets:\n  critical: {resolve: 1hour}\n")
    with pytest.raises(ConfigError):
        build_app(Settings(response_targets_file=bad))
    err = capsys.readouterr().err
    assert "VIGIL_RESPONSE_TARGETS_FILE" in err and "targets.critical.resolve: expected a duration" in err


# --- deciding misses, without I/O --------------------------------------------------------------

OPENED = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def decide(severity: str, ack: float | None, res: float | None, as_of: float) -> list[tuple[str, float, bool]]:
    """Minutes after OPENED in, (target, actual minutes, reached) out."""

    def t(m: float | None) -> datetime | None:
        return None if m is None else OPENED + timedelta(minutes=m)

    found = misses(
        TARGETS,
        key="INC-1",
        severity=severity,
        rule="r",
        opened_at=OPENED,
        acknowledged_at=t(ack),
        resolved_at=t(res),
        as_of=OPENED + timedelta(minutes=as_of),
    )
    return [(m.target, m.actual_s / MIN, m.reached) for m in found]


def test_exactly_on_target_is_met_and_later_is_missed() -> None:
    assert decide("critical", 5, 60, 500) == []
    assert decide("critical", 5.01, 60.5, 500) == [("acknowledge", pytest.approx(5.01), True), ("resolve", 60.5, True)]


def test_never_acknowledged_misses_only_once_it_waited_longer_than_the_target() -> None:
    assert decide("critical", None, None, 4) == []  # open, younger than the target: not missed yet
    assert decide("critical", None, None, 7) == [("acknowledge", 7, False)]
    assert decide("critical", None, None, 61) == [("acknowledge", 61, False), ("resolve", 61, False)]
    assert decide("critical", None, 3, 600) == []  # resolved unacknowledged within the target: it waited 3 minutes
    assert decide("critical", None, 9, 600) == [("acknowledge", 9, False)]


def test_severities_without_targets_miss_nothing() -> None:
    assert decide("info", 500, 5000, 6000) == []
    assert decide("warning", 31, 5000, 6000) == [("acknowledge", 31, True)]  # warning has no resolve target
    assert list(misses(NO_TARGETS, key="k", severity="critical", rule="r", opened_at=OPENED,
                       acknowledged_at=None, resolved_at=None, as_of=OPENED + timedelta(days=9))) == []  # fmt: skip


# --- the audit over seeded incidents -----------------------------------------------------------


# Relative to the real clock: the audit's as_of is the database's now(), which decides the unacknowledged misses.
B = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
SINCE, UNTIL = B - timedelta(hours=1), B + timedelta(days=1)


def b(minutes: float) -> datetime:
    return B + timedelta(minutes=minutes)


# number: (severity, rule, opened, minutes to acknowledge, minutes to resolve)
SEED: dict[int, tuple[str, str, float, float | None, float | None]] = {
    1: ("critical", "db", 0, 2, 10),
    2: ("critical", "db", 10, 4, 20),
    3: ("critical", "db", 20, 6, 30),  # misses acknowledge (5m)
    4: ("critical", "db", 30, 8, 40),  # misses acknowledge
    5: ("critical", "web", 40, 20, 90),  # misses acknowledge and resolve (1h)
    6: ("warning", "web", 50, 10, None),
    7: ("warning", "web", 60, None, None),  # open, unacknowledged for some 5 hours: misses acknowledge (30m)
    8: ("warning", "web", 350, None, None),  # open, unacknowledged for some 10 minutes: not missed yet
    9: ("warning", "web", 70, None, 20),  # resolved unacknowledged after 20 minutes: met
    10: ("warning", "web", 80, None, 45),  # resolved unacknowledged after 45 minutes: misses acknowledge
    11: ("info", "web", 90, 300, None),  # no target for info
    12: ("critical", "db", 100, 180, 300),  # maintenance: in no figure and no miss
}


async def seed(conn: psycopg.AsyncConnection[Any]) -> None:
    for number, (severity, rule, opened, ack, res) in SEED.items():
        incident = await insert_incident(
            conn,
            number=number,
            state="resolved" if res is not None else "acknowledged" if ack is not None else "open",
            severity=severity,
            rule=rule,
            opened_at=b(opened),
            acknowledged_at=None if ack is None else b(opened + ack),
            resolved_at=None if res is None else b(opened + res),
        )
        if number == 12:
            await conn.execute("UPDATE incidents SET maintenance = 'db-upgrade' WHERE id = %s", (incident,))


async def test_response_times_per_severity_and_rule(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed(conn)
    with audit.reading(reader, SINCE, UNTIL) as report:
        by_severity = report.response_by_severity.rows()
        by_rule = report.response_by_rule.rows()
    # (name, incidents, acknowledged, TTA median, TTA p90, resolved, TTR median, TTR p90); p90 of [2,4,6,8,20]
    # minutes: rank 0.9 * 4 = 3.6, so 8 + 0.6 * (20 - 8) = 15.2 minutes.
    assert by_severity == [
        ("critical", 5, 5, 6 * MIN, 15.2 * MIN, 5, 30 * MIN, 70 * MIN),
        ("warning", 5, 1, 10 * MIN, 10 * MIN, 2, 32.5 * MIN, 42.5 * MIN),
        ("info", 1, 1, 300 * MIN, 300 * MIN, 0, None, None),
    ]
    # The maintenance incident (rule db, 3 hours to acknowledge) would have moved every figure of db.
    assert by_rule == [
        ("db", 4, 4, 5 * MIN, 7.4 * MIN, 4, 25 * MIN, 37 * MIN),
        ("web", 7, 3, 20 * MIN, 244 * MIN, 3, 45 * MIN, 81 * MIN),
    ]


async def test_missed_targets(conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]) -> None:
    await seed(conn)
    with audit.reading(reader, SINCE, UNTIL, TARGETS) as report:
        missed = list(report.missed)
        as_of = report.as_of
        assert report.missed.first(2) == (missed[:2], 6)
    waited = (as_of - b(60)).total_seconds()
    assert missed == [
        Miss("INC-000003", "critical", "db", "acknowledge", 6 * MIN, 5 * MIN, True),
        Miss("INC-000004", "critical", "db", "acknowledge", 8 * MIN, 5 * MIN, True),
        Miss("INC-000005", "critical", "web", "acknowledge", 20 * MIN, 5 * MIN, True),
        Miss("INC-000005", "critical", "web", "resolve", 90 * MIN, 60 * MIN, True),
        Miss("INC-000007", "warning", "web", "acknowledge", waited, 30 * MIN, False),
        Miss("INC-000010", "warning", "web", "acknowledge", 45 * MIN, 30 * MIN, False),
    ]
    with audit.reading(reader, SINCE, UNTIL) as report:
        assert list(report.missed) == []  # no targets, nothing missed


def percentile(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def test_figures_recompute_from_the_stored_rows(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    """The audit's figures, recomputed in Python from what the incidents table holds (not from SEED)."""
    await seed(conn)
    stored = await (
        await conn.execute(
            "SELECT key, severity, rule, maintenance, opened_at, acknowledged_at, resolved_at FROM incidents"
            " WHERE announced AND opened_at >= %s AND opened_at < %s",
            (SINCE, UNTIL),
        )
    ).fetchall()
    with audit.reading(reader, SINCE, UNTIL, TARGETS) as report:
        by_severity, by_rule = report.response_by_severity.rows(), report.response_by_rule.rows()
        missed = list(report.missed)
        as_of = report.as_of

    def stats(values: list[float]) -> tuple[int, float | None, float | None]:
        return len(values), percentile(values, 0.5), percentile(values, 0.9)

    def figures(group: str) -> list[tuple[Any, ...]]:
        tta: defaultdict[str, list[float]] = defaultdict(list)
        ttr: defaultdict[str, list[float]] = defaultdict(list)
        count: defaultdict[str, int] = defaultdict(int)
        for r in stored:
            if r["maintenance"] is not None:
                continue
            count[r[group]] += 1
            if r["acknowledged_at"]:
                tta[r[group]].append((r["acknowledged_at"] - r["opened_at"]).total_seconds())
            if r["resolved_at"]:
                ttr[r[group]].append((r["resolved_at"] - r["opened_at"]).total_seconds())
        order = sorted(count, key=lambda n: (-severity_rank(n), n)) if group == "severity" else sorted(count)
        return [(n, count[n], *stats(tta[n]), *stats(ttr[n])) for n in order]

    for got, want in ((by_severity, figures("severity")), (by_rule, figures("rule"))):
        assert len(got) == len(want) and all(g == pytest.approx(w) for g, w in zip(got, want, strict=True)), got
    expected: list[tuple[str, str, float]] = []
    for r in sorted(stored, key=lambda r: r["opened_at"]):
        target = TARGETS.for_severity(r["severity"])
        if r["maintenance"] is not None or target is None:
            continue
        ack_wait = (r["acknowledged_at"] or r["resolved_at"] or as_of) - r["opened_at"]
        res_wait = (r["resolved_at"] or as_of) - r["opened_at"]
        if target.acknowledge and ack_wait > target.acknowledge:
            expected.append((r["key"], "acknowledge", ack_wait.total_seconds()))
        if target.resolve and res_wait > target.resolve:
            expected.append((r["key"], "resolve", res_wait.total_seconds()))
    assert [(m.key, m.target, m.actual_s) for m in missed] == expected


async def test_markdown_and_xlsx_show_response_times_and_misses(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(conn)
    monkeypatch.setattr(audit, "TOP_MISSED", 4)
    monkeypatch.setattr(audit_markdown, "TOP_MISSED", 4)
    out = io.BytesIO()
    with audit.reading(reader, SINCE, UNTIL, TARGETS) as report:
        text = audit_markdown.render(report)
        audit_xlsx.write(report, out)
    section = text[text.index("## Response times") : text.index("## By alert name")]
    found = tables(MarkdownIt("commonmark").enable("table").parse(section))
    severity, rule, targets, missed = found
    assert severity[0][:4] == ["Severity", "Incidents", "Acknowledged", "TTA median"]
    assert severity[1] == ["critical", "5", "5", "6m 00s", "15m 12s", "5", "30m 00s", "1h 10m 00s"]
    assert severity[3][-2:] == ["", ""]  # info: none resolved
    assert [row[0] for row in rule[1:]] == ["db", "web"]
    assert targets[1:] == [["critical", "5m 00s", "1h 00m 00s"], ["warning", "30m 00s", ""]]
    assert "6 targets missed; the first 4 are listed, the XLSX lists them all." in section
    assert missed[1:] == [
        ["INC-000003", "critical", "db", "acknowledge", "5m 00s", "6m 00s"],
        ["INC-000004", "critical", "db", "acknowledge", "5m 00s", "8m 00s"],
        ["INC-000005", "critical", "web", "acknowledge", "5m 00s", "20m 00s"],
        ["INC-000005", "critical", "web", "resolve", "1h 00m 00s", "1h 30m 00s"],
    ]

    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    assert wb.sheetnames[-5:-3] == ["Response times", "Missed targets"]  # then the noise sheets
    header, *rows = wb["Response times"].iter_rows(values_only=True)
    assert header[:2] == ("By", "Severity or rule") and [r[:2] for r in rows] == [
        ("severity", "critical"),
        ("severity", "warning"),
        ("severity", "info"),
        ("rule", "db"),
        ("rule", "web"),
    ]
    assert rows[0][2:] == (5, 5, 6, 15.2, 5, 30, 70, 5, 60) and rows[2][-2:] == (None, None)
    assert wb["Response times"].auto_filter.ref == "A1:K6"
    header, *rows = wb["Missed targets"].iter_rows(values_only=True)
    assert header == ("Incident", "Severity", "Rule", "Target", "Within (min)", "Took (min)", "Done")
    assert len(rows) == 6  # all of them, not the Markdown's first 4
    assert rows[-1] == ("INC-000010", "warning", "web", "acknowledge", 30, 45, False)


async def test_without_targets_the_audit_says_so(
    conn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    await seed(conn)
    out = io.BytesIO()
    with audit.reading(reader, SINCE, UNTIL) as report:
        text = audit_markdown.render(report)
        audit_xlsx.write(report, out)
    assert "No targets are set (`VIGIL_RESPONSE_TARGETS_FILE`)." in text
    assert openpyxl.load_workbook(io.BytesIO(out.getvalue()))["Missed targets"].max_row == 1
