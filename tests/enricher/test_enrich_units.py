"""The enricher's pure parts: query building and escaping, window, summaries, Fail2Ban parsing, linking."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.fakeloki import go_unquote, parse_query
from services.enricher import promql
from services.enricher.breaker import CircuitBreaker, CircuitOpenError
from services.enricher.config import (
    EnrichmentConfig,
    EnrichmentConfigError,
    PrometheusConfig,
    WindowConfig,
    load_config,
    parse_duration,
)
from services.enricher.context import LokiResult, PromResult, assemble, log_excerpt, ns_to_time
from services.enricher.enrich import window_for
from services.enricher.plan import (
    AlertFacts,
    IncidentFacts,
    LokiQueryPlan,
    PromQueryPlan,
    SkippedExpressions,
    build_plan,
)
from services.enricher.security import parse_fail2ban
from services.enricher.summarise import summarise, to_time
from services.enricher.timeline import AlertMark, build_timeline, find_bursts, per_minute
from services.enricher.upstream import parse_matrix, parse_streams, prometheus_duration
from services.enricher.window import EARLIEST, LATEST, incident_window
from shared.incident_context import IncidentContext, LogBurst

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
NASTY = ['web"} or vector(1) #', "a\\b", 'x\\"y', "new\nline", "tab\there", "é ∑ 🙂", "\x00\x7f", "(.*)|.+"]


# --- escaping ------------------------------------------------------------------------------------


@given(st.text())
def test_escaped_string_unquotes_to_the_same_value(value: str) -> None:
    value = value.encode("utf-8", "replace").decode()  # no lone surrogates: they are not text
    assert go_unquote(promql.quote_string(value)) == value


@pytest.mark.parametrize("value", NASTY)
def test_quote_meta_matches_only_the_value(value: str) -> None:
    import re

    regex = re.compile(promql.quote_meta(value), re.DOTALL)
    assert regex.fullmatch(value)
    assert not regex.fullmatch(value + "x")
    assert not regex.fullmatch("web")


@pytest.mark.parametrize("host", NASTY)
def test_nasty_host_stays_inside_its_string_in_logql(host: str) -> None:
    """The rendered selector parses as a selector with one matcher whose regex matches exactly the host."""
    values = {"host_regex": promql.alternation([host]) or ""}
    query = promql.render('{host=~"{{host_regex}}"} |= "x"', values)
    parsed = parse_query(query)
    assert len(parsed.matchers) == 1  # type: ignore[union-attr]
    matcher = parsed.matchers[0]  # type: ignore[union-attr]
    assert matcher.matches_labels({"host": host})
    assert not matcher.matches_labels({"host": "web"})
    assert not matcher.matches_labels({"host": host + "x"})


def test_templates_must_keep_variables_inside_double_quotes() -> None:
    promql.check_template('up{instance=~"{{instance_regex}}"}', ["instance_regex"])
    for bad in (
        "up{instance=~{{instance_regex}}}",
        "up{instance=~'{{instance_regex}}'}",
        "up{instance=~`{{instance_regex}}`}",
        'up{a="x"} or {{instance_regex}}',
        '# "{{instance_regex}}"',
    ):
        with pytest.raises(promql.TemplateError):
            promql.check_template(bad, ["instance_regex"])
    with pytest.raises(promql.TemplateError, match="unknown variable"):
        promql.check_template('up{a="{{nope}}"}', ["instance_regex"])


def test_config_with_unsafe_template_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.yml"
    path.write_text("prometheus:\n  queries:\n    - {name: up, query: 'up{instance=~{{instance_regex}}}'}\n")
    with pytest.raises(EnrichmentConfigError, match="double-quoted"):
        load_config(path)
    path.write_text("window: {before: soon}\n")
    with pytest.raises(EnrichmentConfigError, match=r"window\.before"):
        load_config(path)


def test_deploy_config_loads() -> None:
    config = load_config(Path("deploy/enrichment.yml"))
    assert config.window.before == timedelta(hours=1)
    assert {q.name for q in config.prometheus.queries} >= {"cpu", "memory", "disk", "up"}
    assert config.loki.logs and config.loki.errors and config.loki.security
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)


# --- alert expression ------------------------------------------------------------------------------


def test_alert_expression_from_generator_url() -> None:
    url = "http://prometheus:9090/graph?g0.expr=up%7Bjob%21%3D%22vigil%22%7D+%3D%3D+0&g0.tab=1"
    assert promql.alert_expression(url) == 'up{job!="vigil"} == 0'
    assert promql.alert_expression("http://grafana/alerting/grafana/abc/view") is None
    assert promql.alert_expression("") is None
    assert promql.alert_expression("http://p/graph?g0.expr=" + "x" * 5000) is None


@pytest.mark.parametrize(
    ("expr", "stripped"),
    [
        ('up{job!="vigil"} == 0', 'up{job!="vigil"}'),
        ("100 * (1 - avg(rate(x[5m]))) > 90", "100 * (1 - avg(rate(x[5m])))"),
        ("a >= bool 1e3", "a"),
        ("a > b", "a > b"),
        ("a > 0 and b", "a > 0 and b"),
        ('x{a=~"<|>"} < -1.5', 'x{a=~"<|>"}'),
        ("(a > 90)", "(a > 90)"),
    ],
)
def test_threshold_is_removed_only_at_the_top_level(expr: str, stripped: str) -> None:
    assert promql.without_threshold(expr) == stripped


# --- plan and window -----------------------------------------------------------------------------


# The Prometheus of the test alerts' generatorURLs (http://p/graph?...), as VIGIL_PROMETHEUS_URL would name it.
OURS = promql.trusted_hosts("http://p", ())


def incident(hosts: list[str], alerts: list[AlertFacts] | None = None) -> IncidentFacts:
    return IncidentFacts(1, "INC-000001", 3, hosts, T0, None, alerts or [])


def alert(host: str = "web-1", url: str = "", **labels: str) -> AlertFacts:
    return AlertFacts("HighCpu", host, {"instance": f"{host}:9100", **labels}, url, T0, None, "warning")


def test_plan_renders_templates_with_escaped_hosts_and_skips_what_has_no_value() -> None:
    config = load_config(Path("deploy/enrichment.yml"))
    url = "http://p/graph?g0.expr=node_load1+%3E+4"
    plan = build_plan(incident(["web-1", 'bad"host'], [alert(url=url, job="node")]), config, trusted_hosts=OURS)
    by_name = {p.name: p.query for p in plan.prometheus}
    assert by_name["alert: HighCpu"] == "node_load1"
    assert by_name["up"] == 'up{instance=~"(?:bad\\"host|web-1)(?::[0-9]+)?|(?:web-1:9100)"}'
    assert {p.kind for p in plan.loki} == {"logs", "errors", "security"}
    assert build_plan(incident([]), config, trusted_hosts=OURS).prometheus == []


def test_window_from_an_hour_before_to_resolution_and_step() -> None:
    w = incident_window(
        first_alert_at=T0,
        resolved_at=T0 + timedelta(hours=2),
        now=T0 + timedelta(days=1),
        before=timedelta(hours=1),
        after=timedelta(0),
        max_span=timedelta(days=2),
        max_points=300,
        min_step=timedelta(seconds=15),
    )
    assert (w.start, w.end, w.step_s) == (T0 - timedelta(hours=1), T0 + timedelta(hours=2), 36)
    short = incident_window(
        first_alert_at=T0,
        resolved_at=None,
        now=T0 + timedelta(minutes=1),
        before=timedelta(minutes=10),
        after=timedelta(0),
        max_span=timedelta(days=2),
        max_points=300,
        min_step=timedelta(seconds=15),
    )
    assert short.end == T0 + timedelta(minutes=1) and short.step_s == 15


YEAR_1 = datetime(1, 1, 1, tzinfo=UTC)
YEAR_9999 = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
# Local times whose UTC equivalents lie outside datetime's range (year 0 and year 10000).
YEAR_1_EAST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
YEAR_9999_WEST = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12)))
WINDOW = {
    "before": timedelta(hours=1),
    "after": timedelta(minutes=5),
    "max_span": timedelta(days=2),
    "max_points": 300,
    "min_step": timedelta(seconds=15),
}


NOW = T0 + timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "resolved", "expected"),
    [
        # An ancient first alert: the most recent max_span, as for any very long incident.
        (YEAR_1, None, (NOW - timedelta(days=2), NOW)),
        (YEAR_1_EAST, YEAR_9999_WEST, (NOW - timedelta(days=2), NOW)),
        (YEAR_1, YEAR_9999, (NOW - timedelta(days=2), NOW)),
        # A first alert from the future counts as now ...
        (YEAR_9999, None, (NOW - timedelta(hours=1), NOW)),
        (YEAR_9999_WEST, YEAR_9999, (NOW - timedelta(hours=1), NOW)),
        # ... and a resolution before the first alert as that alert.
        (YEAR_9999, YEAR_1, (NOW - timedelta(hours=1), NOW)),
        (T0, YEAR_1_EAST, (T0 - timedelta(hours=1), T0 + timedelta(minutes=5))),
        # Nothing before the epoch: no upstream holds data from then.
        (YEAR_1, YEAR_1, (EPOCH - timedelta(hours=1), EPOCH + timedelta(minutes=5))),
    ],
)
def test_window_of_alert_times_from_year_1_to_9999(
    first: datetime, resolved: datetime | None, expected: tuple[datetime, datetime]
) -> None:
    w = incident_window(first_alert_at=first, resolved_at=resolved, now=NOW, **WINDOW)  # type: ignore[arg-type]
    assert (w.start, w.end) == expected
    assert 15 <= w.step_s <= math.ceil(timedelta(days=2).total_seconds() / 300)


def test_window_of_an_incident_resolved_long_ago_is_where_it_happened() -> None:
    first, resolved = NOW - timedelta(days=5), NOW - timedelta(days=4)
    w = incident_window(first_alert_at=first, resolved_at=resolved, now=NOW, **WINDOW)  # type: ignore[arg-type]
    assert (w.start, w.end) == (first - timedelta(hours=1), resolved + timedelta(minutes=5))


def test_window_never_ends_past_now_nor_is_empty() -> None:
    resolved = incident_window(first_alert_at=T0, resolved_at=YEAR_9999, now=NOW, **WINDOW)  # type: ignore[arg-type]
    assert (resolved.start, resolved.end) == (T0 - timedelta(hours=1), NOW)
    instant = incident_window(
        first_alert_at=NOW,
        resolved_at=NOW,
        now=NOW,
        before=timedelta(0),
        after=timedelta(0),
        max_span=timedelta(days=2),
        max_points=300,
        min_step=timedelta(seconds=15),
    )
    assert (instant.start, instant.end) == (NOW - timedelta(seconds=15), NOW)


def test_answer_times_outside_datetimes_range_land_at_its_ends() -> None:
    assert to_time(1e20) == LATEST and to_time(YEAR_9999.timestamp()) == LATEST
    assert to_time(-1e20) == EARLIEST and to_time(float("nan")) == EARLIEST
    assert to_time(YEAR_1.timestamp()) == YEAR_1
    assert ns_to_time(10**30) == LATEST and ns_to_time(-(10**30)) == EARLIEST
    assert ns_to_time(1_000_000_001_500) == datetime(1970, 1, 1, 0, 16, 40, 1, tzinfo=UTC)


def test_context_of_alerts_and_answers_from_year_1_to_9999() -> None:
    """Hostile alert times (and answers to match) give a context, not an OverflowError that parks the message."""
    config = EnrichmentConfig(window=WindowConfig(after=timedelta(minutes=5)))
    alerts = [
        AlertFacts("Ancient", "web-1", {}, "", YEAR_1_EAST, YEAR_9999, "warning"),
        AlertFacts("Future", "web-1", {}, "", YEAR_9999_WEST, None, "warning"),
    ]
    facts = IncidentFacts(1, "INC-000001", 1, ["web-1"], YEAR_1, YEAR_9999, alerts)
    now = T0
    window = window_for(facts, config, now)
    assert (window.start, window.end) == (now - config.window.max_span, now)
    points = [(YEAR_1.timestamp(), 1.0), (now.timestamp() - 60, 2.0), (YEAR_9999.timestamp(), 3.0)]
    prom = [PromResult(PromQueryPlan("cpu", "q1"), series=[({"instance": "web-1:9100"}, points)])]
    loki = [
        LokiResult(
            LokiQueryPlan("errors", "q2", 500),
            matrix=[({"host": "web-1"}, [(YEAR_1.timestamp(), 7.0), (now.timestamp(), 9.0)])],
        ),
        LokiResult(
            LokiQueryPlan("logs", "q3", 10), streams=[({"host": "web-1"}, [(-(10**30), "old"), (10**30, "new")])]
        ),
    ]
    context = assemble(facts, window, prom, loki, config, generated_at=now)
    # Summaries, bursts and log lines use what the answers said, at the ends of datetime's range at worst ...
    assert (context.metrics[0].peak, context.metrics[0].peak_at) == (3.0, LATEST)
    assert [(b.minute, b.errors) for b in context.error_bursts] == [(EARLIEST, 7), (now - timedelta(minutes=1), 9)]
    assert [(line.at, line.line) for line in context.logs] == [(LATEST, "new"), (EARLIEST, "old")]
    # ... the alerts keep their own times on the timeline, in order ...
    alert_marks = [(e.kind, e.at) for e in context.timeline if e.kind.startswith("alert_")]
    assert alert_marks == [("alert_start", YEAR_1_EAST), ("alert_start", YEAR_9999_WEST)]
    # ... and the context can be stored and read back.
    assert IncidentContext.model_validate_json(context.model_dump_json()) == context


# --- summaries -------------------------------------------------------------------------------------


def test_summary_of_a_peak() -> None:
    base = T0.timestamp()
    points = [(base + i * 15, v) for i, v in enumerate([1, 1, 1, 1, 1, 1, 9, 2, 1, float("nan")])]
    s = summarise(points, alert_at=T0 + timedelta(seconds=90), keep_points=150)
    assert (s.min, s.max, s.peak, s.baseline) == (1, 9, 9, 1)
    assert s.avg == pytest.approx(18 / 9)
    assert s.peak_at == T0 + timedelta(seconds=90)
    assert s.deviation_at == T0 + timedelta(seconds=90)
    assert len(s.points) == 9


def test_deviation_starts_where_the_excursion_began() -> None:
    base = T0.timestamp()
    values = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0, 14, 20, 30, 25]
    s = summarise([(base + i, v) for i, v in enumerate(values)], alert_at=to_time(base + 8), keep_points=150)
    assert s.deviation_at == to_time(base + 6)
    assert s.peak_at == to_time(base + 8)
    down = summarise(
        [(base + i, v) for i, v in enumerate([1, 1, 1, 1, 0, 0])], alert_at=to_time(base + 4), keep_points=9
    )
    assert down.deviation_at == to_time(base + 4)


def test_downsampling_keeps_the_peak() -> None:
    base = T0.timestamp()
    points = [(base + i, float(i % 7)) for i in range(5000)]
    points[3333] = (base + 3333, 1000.0)
    s = summarise(points, alert_at=T0, keep_points=100)
    assert len(s.points) <= 100
    assert (to_time(base + 3333), 1000.0) in s.points


# --- security and timeline -----------------------------------------------------------------------


def test_fail2ban_lines() -> None:
    at = T0
    ban = parse_fail2ban("2024-09-01 12:00:00,123 fail2ban.actions [812]: NOTICE  [sshd] Ban 203.0.113.7", at=at)
    assert ban is not None and (ban.action, ban.ip, ban.jail, ban.at) == ("ban", "203.0.113.7", "sshd", at)
    unban = parse_fail2ban("Sep  1 12:00:00 h fail2ban-server[9]: NOTICE [nginx-http] Unban 2001:db8::1", at=at)
    assert unban is not None and (unban.action, unban.ip, unban.jail) == ("unban", "2001:db8::1", "nginx-http")
    assert parse_fail2ban("2024 fail2ban.filter [1]: INFO [sshd] Found 203.0.113.7", at=at) is None
    assert parse_fail2ban("fail2ban.actions [1]: NOTICE [sshd] Ban 300.1.2.3", at=at) is None
    assert parse_fail2ban("sshd[1]: Failed password for root from 203.0.113.7", at=at) is None


def test_bursts_are_runs_well_above_the_median() -> None:
    counts = [LogBurst(minute=T0 + timedelta(minutes=m), errors=n) for m, n in [(0, 1), (5, 12), (6, 30), (9, 2)]]
    bursts = find_bursts(counts, window_minutes=60, min_errors=5, factor=3)
    assert len(bursts) == 1
    assert (bursts[0].start, bursts[0].minutes, bursts[0].errors, bursts[0].peak) == (
        T0 + timedelta(minutes=5),
        2,
        42,
        30,
    )
    merged = per_minute([(T0 + timedelta(seconds=5), 2), (T0 + timedelta(seconds=50), 3)])
    assert merged == [LogBurst(minute=T0, errors=5)]


def test_context_links_alerts_peaks_and_bursts_and_says_what_is_missing() -> None:
    config = EnrichmentConfig()
    base = (T0 - timedelta(minutes=10)).timestamp()
    cpu = [(base + i * 60, 5.0 if i != 9 else 95.0) for i in range(15)]
    facts = incident(["web-1"], [alert()])
    window = incident_window(
        first_alert_at=T0,
        resolved_at=None,
        now=T0 + timedelta(minutes=5),
        before=timedelta(minutes=10),
        after=timedelta(0),
        max_span=timedelta(days=1),
        max_points=300,
        min_step=timedelta(seconds=15),
    )
    errors_at = (T0 - timedelta(minutes=1)).timestamp() + 60  # the minute before the alert
    prom = [
        PromResult(PromQueryPlan("cpu", "q1", "percent"), series=[({"instance": "web-1:9100"}, cpu)]),
        PromResult(PromQueryPlan("up", "q2"), error="cannot connect: refused"),
        PromResult(PromQueryPlan("memory", "q3"), error="cannot connect: refused"),
    ]
    loki = [
        LokiResult(LokiQueryPlan("errors", "q4", 0), matrix=[({"host": "web-1"}, [(errors_at, 40.0)])]),
        LokiResult(LokiQueryPlan("logs", "q5", 10), streams=[({"host": "web-1"}, [(int(T0.timestamp() * 1e9), "x")])]),
    ]
    context = assemble(facts, window, prom, loki, config, generated_at=T0 + timedelta(minutes=5))
    assert not context.complete
    assert context.missing == ["prometheus (up, memory): cannot connect: refused"]
    assert [(u.name, u.ok, u.queries, u.failed) for u in context.upstreams] == [
        ("prometheus", False, 3, 2),
        ("loki", True, 2, 0),
    ]
    assert context.metrics[0].peak == 95 and context.metrics[0].peak_at == T0 - timedelta(minutes=1)
    kinds = [(e.kind, e.at) for e in context.timeline]
    assert ("log_burst", T0 - timedelta(minutes=1)) in kinds
    assert ("metric_peak", T0 - timedelta(minutes=1)) in kinds
    assert ("alert_start", T0) in kinds
    assert kinds == sorted(kinds, key=lambda k: k[1])
    assert context.log_lines_total == 1


def test_log_excerpt_limits_lines_and_bytes() -> None:
    streams = [({"host": "a"}, [(i, "é" * 2000) for i in range(50)])]
    lines = log_excerpt(streams, limit=10, max_line_bytes=100, max_total_bytes=450)
    assert len(lines) == 4
    assert all(len(line.line.encode()) <= 100 for line in lines)
    assert lines[0].at >= lines[-1].at


def test_timeline_alone_orders_alert_start_and_end() -> None:
    marks = [AlertMark("A", "h", T0, T0 + timedelta(minutes=3))]
    events = build_timeline(
        alerts=marks, metrics=[], bursts=[], security=[], window_start=T0, window_end=T0 + timedelta(hours=1)
    )
    assert [e.kind for e in events] == ["alert_start", "alert_end"]


# --- parsing answers and the breaker ---------------------------------------------------------------


def test_parsing_prometheus_and_loki_answers() -> None:
    matrix = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[1.5, "NaN"], [2, "3"]]}]},
    }
    parsed = parse_matrix(matrix)
    assert parsed[0][0] == {"a": "1"} and parsed[0][1][1] == (2.0, 3.0)
    streams = {
        "status": "success",
        "data": {"resultType": "streams", "result": [{"stream": {"h": "x"}, "values": [["17", "l"]]}]},
    }
    assert parse_streams(streams) == [({"h": "x"}, [(17, "l")])]


def test_breaker_opens_after_failures_then_lets_one_trial_through() -> None:
    now = [0.0]
    breaker = CircuitBreaker("loki", failure_threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(3):
        breaker.before_call()
        breaker.failed()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    now[0] = 10.0
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # only one at a time
    breaker.failed()
    now[0] = 15.0
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    now[0] = 20.0
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == "closed"
    breaker.before_call()


def test_service_refuses_to_start_with_an_unsafe_config(tmp_path: Path) -> None:
    from services.enricher.app import build_app
    from shared.config import ConfigError, Settings

    path = tmp_path / "enrichment.yml"
    path.write_text("loki:\n  logs: '{host=~{{host_regex}}}'\n")
    with pytest.raises(ConfigError):
        build_app(Settings(enrichment_config=path))


def test_service_refuses_to_start_with_a_trusted_host_that_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    from services.enricher.app import build_app
    from shared.config import ConfigError, Settings

    with pytest.raises(ConfigError):
        build_app(Settings(prometheus_trusted_hosts="prometheus-2:9090,prometheus-3/graph"))  # type: ignore[arg-type]
    assert "VIGIL_PROMETHEUS_TRUSTED_HOSTS" in capsys.readouterr().err


# --- whose alert expressions are run -------------------------------------------------------------------


def test_generator_url_hosts_compare_with_default_ports_and_without_case() -> None:
    assert promql.url_host("http://Prometheus:9090/graph?g0.expr=up") == "prometheus:9090"
    assert promql.url_host("https://prom.example.com/graph") == "prom.example.com:443"
    assert promql.url_host("http://prom.example.com:80/graph") == promql.url_host("http://prom.example.com/graph")
    assert promql.url_host("http://[::1]:9090/graph") == "[::1]:9090"
    # What precedes @ is a user name, not the host.
    assert promql.url_host("http://prometheus:9090@evil:9090/graph") == "evil:9090"
    for hostless in ("/graph?g0.expr=up", "ftp://prometheus/graph", "http://prometheus:99999/", "http:///graph", ""):
        assert promql.url_host(hostless) is None

    allowed = ["Prom-2.example", "vm:59090", "[::1]:9090", "https://p3.example:8443/"]
    assert promql.trusted_hosts("http://127.0.0.1:59090", allowed) == {
        "127.0.0.1:59090",
        "prom-2.example:80",  # no port: either default port, as a generatorURL without one means
        "prom-2.example:443",
        "vm:59090",
        "[::1]:9090",
        "p3.example:8443",
    }
    for bad in ("prom:port", "prom/graph", "user@prom", "prom:70000", "prom?x", "http:///graph"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            promql.trusted_hosts("http://p", [bad])


def test_only_expressions_from_our_prometheus_or_the_allow_list_are_planned() -> None:
    def fired(name: str, base: str) -> AlertFacts:
        url = f"{base}/graph?g0.expr={name.lower()}_metric+%3E+1"
        return AlertFacts(name, "web-1", {"instance": "web-1:9100"}, url, T0, None)

    trusted = promql.trusted_hosts("http://prometheus:9090", ["prometheus-2.example"])
    alerts = [
        fired("Evil", "http://prometheus.evil:9090"),
        fired("Ours", "http://PROMETHEUS:9090"),
        fired("Second", "https://prometheus-2.example"),
        fired("Spoof", "http://prometheus:9090@prometheus.evil:9090"),
        fired("Relative", ""),
        fired("EvilToo", "http://prometheus.evil:9090"),
    ]
    config = EnrichmentConfig(prometheus=PrometheusConfig(max_alert_expressions=2))
    plan = build_plan(incident(["web-1"], alerts), config, trusted_hosts=trusted)
    # Skipped expressions do not use up max_alert_expressions.
    assert [(p.name, p.query) for p in plan.prometheus] == [
        ("alert: Ours", "ours_metric"),
        ("alert: Second", "second_metric"),
    ]
    assert plan.skipped == [
        SkippedExpressions("", ("Relative",)),
        SkippedExpressions("prometheus.evil:9090", ("Evil", "EvilToo", "Spoof")),
    ]
    nothing_trusted = build_plan(incident(["web-1"], alerts), config, trusted_hosts=frozenset())
    assert nothing_trusted.prometheus == [] and len(nothing_trusted.skipped) == 4
    switched_off = EnrichmentConfig(prometheus=PrometheusConfig(alert_expression=False))
    assert build_plan(incident(["web-1"], alerts), switched_off, trusted_hosts=frozenset()).skipped == []


def test_context_says_which_expressions_were_not_run_and_why() -> None:
    window = incident_window(first_alert_at=T0, resolved_at=None, now=T0, **WINDOW)  # type: ignore[arg-type]
    skipped = [SkippedExpressions("prometheus.evil:9090", ("Evil",)), SkippedExpressions("", ("A", "B"))]
    context = assemble(incident(["web-1"]), window, [], [], EnrichmentConfig(), generated_at=T0, skipped=skipped)
    assert context.missing == [
        "prometheus (alert: Evil): expression from untrusted host prometheus.evil:9090 not run",
        "prometheus (alert: A, alert: B): expressions from a generatorURL without an http(s) host not run",
    ]
    assert not context.complete and all(u.ok for u in context.upstreams)

    many = [SkippedExpressions(f"evil-{i}:9090", tuple(f"N{j}" for j in range(7))) for i in range(8)]
    lines = assemble(incident([]), window, [], [], EnrichmentConfig(), generated_at=T0, skipped=many).missing
    assert len(lines) == 6
    assert lines[0] == (
        "prometheus (alert: N0, alert: N1, alert: N2, alert: N3, alert: N4, 2 more): "
        "expressions from untrusted host evil-0:9090 not run"
    )
    assert lines[-1] == "prometheus: expressions from 3 more untrusted hosts not run"


def test_prometheus_durations_are_whole_seconds_or_milliseconds() -> None:
    assert prometheus_duration(timedelta(seconds=5)) == "5s"
    assert prometheus_duration(timedelta(milliseconds=300)) == "300ms"
    assert prometheus_duration(timedelta(seconds=1.5)) == "1500ms"
    assert prometheus_duration(timedelta(0)) == "1ms"


def test_hosts_are_capped_and_empty_labels_ignored() -> None:
    from services.enricher.plan import MAX_HOSTS, template_values

    many = incident([f"h{i:03d}" for i in range(MAX_HOSTS + 20)], [alert(host="", job="")])
    values = template_values(many)
    assert values["host_regex"].count("|") == MAX_HOSTS - 1
    assert "job_regex" not in values


def test_alert_expression_keeps_the_series_of_the_alerting_instance() -> None:
    url = "http://p/graph?g0.expr=" + "avg+by+(instance)+(rate(x[5m]))+%3E+0.9"
    facts = incident(["web-1"], [alert(url=url), alert(host="web-2", url=url)])
    plan = build_plan(facts, EnrichmentConfig(), trusted_hosts=OURS)
    assert [p.name for p in plan.prometheus] == ["alert: HighCpu"]
    query = plan.prometheus[0]
    fleet = [({"instance": f"web-{i}:9100"}, [(T0.timestamp(), float(i))]) for i in range(1, 20)]
    fleet.append(({}, [(T0.timestamp(), 1.0)]))  # an aggregate without labels agrees with any alert
    context = assemble(
        facts,
        incident_window(
            first_alert_at=T0,
            resolved_at=None,
            now=T0 + timedelta(minutes=1),
            before=timedelta(minutes=5),
            after=timedelta(0),
            max_span=timedelta(days=1),
            max_points=300,
            min_step=timedelta(seconds=15),
        ),
        [PromResult(query, series=fleet)],
        [],
        EnrichmentConfig(),
        generated_at=T0,
    )
    assert sorted(m.labels.get("instance", "") for m in context.metrics) == ["", "web-1:9100", "web-2:9100"]


# --- coalescing and refresh interval (pure) ----------------------------------------------------------


def test_growth_events_coalesce_and_wait_for_the_refresh_interval() -> None:
    from services.enricher.consumer import next_step

    now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    interval = timedelta(seconds=10)
    fresh = {"revision": 5, "enriched_revision": 5, "enrichment_published": True, "enriched_at": now}
    stale = {**fresh, "revision": 6}
    never = {"revision": 1, "enriched_revision": None, "enrichment_published": None, "enriched_at": None}
    assert next_step(fresh, growth=True, now=now, interval=interval) == "skip"
    assert next_step(stale, growth=True, now=now + timedelta(seconds=3), interval=interval) == "defer"
    assert next_step(stale, growth=True, now=now + timedelta(seconds=10), interval=interval) == "enrich"
    assert next_step(stale, growth=False, now=now + timedelta(seconds=3), interval=interval) == "enrich"
    assert next_step(never, growth=True, now=now, interval=interval) == "enrich"
    # Stored but never announced (a crash between commit and publish): done again, so the event goes out.
    unannounced = {**fresh, "enrichment_published": False}
    assert next_step(unannounced, growth=False, now=now, interval=interval) == "enrich"
