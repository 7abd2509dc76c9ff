"""Peaks and minimums from every raw sample, not one value per step: the extreme queries (pure) and the summary
maths that combine their answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.enricher import promql
from services.enricher.config import EnrichmentConfig, PrometheusConfig
from services.enricher.context import PromResult, assemble, series_extremes
from services.enricher.plan import IncidentFacts, PromQueryPlan
from services.enricher.summarise import Extremes, summarise, to_time
from services.enricher.upstream import parse_vector
from services.enricher.window import Window

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
NASTY = ['web"} or vector(1) #', "a\\b", 'x\\"y', "new\nline", "}{", "(.*)|.+", "é ∑ 🙂", "\x00\x7f"]
STEP = timedelta(seconds=30)
HOUR = timedelta(hours=1)
RES = timedelta(seconds=15)


# --- queries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ["up", " up ", 'up{instance=~"a|b"}', '{__name__="x", job!="y"}', 'x{a="}"}', "x{a=`}`}", "node:cpu:rate5m"],
)
def test_bare_selectors(expr: str) -> None:
    assert promql.is_vector_selector(expr)


@pytest.mark.parametrize(
    "expr",
    ["rate(x[5m])", "x[5m]", "x offset 5m", "x @ 100", "sum(x)", "x > 1", 'x{a="b"} or y', "NaN", "Inf", "", "x{"],
)
def test_anything_else_is_no_bare_selector(expr: str) -> None:
    assert not promql.is_vector_selector(expr)


def test_a_bare_selector_is_ranged_over_its_raw_samples() -> None:
    q = promql.extreme_queries('up{job="node"}', step=STEP, window=HOUR, resolution=RES)
    assert q == promql.ExtremeQueries(
        step_min='min_over_time(up{job="node"}[30s])',
        step_max='max_over_time(up{job="node"}[30s])',
        min='min_over_time(up{job="node"}[3600s])',
        max='max_over_time(up{job="node"}[3600s])',
        avg='avg_over_time(up{job="node"}[3600s])',
    )


def test_any_other_expression_is_a_subquery_at_the_resolution() -> None:
    expr = 'sum by (instance) (rate(x{job="node"}[5m]))'
    q = promql.extreme_queries(expr, step=STEP, window=HOUR, resolution=RES)
    assert q is not None
    assert q.step_max == f"max_over_time((\n{expr}\n)[30s:15s])"
    assert q.avg == f"avg_over_time((\n{expr}\n)[3600s:15s])"


def test_a_subquery_resolution_is_never_coarser_than_its_range_nor_finer_than_the_point_cap() -> None:
    assert promql.over_time("max_over_time", "rate(x[1m])", timedelta(seconds=5), RES).endswith("[5s:5s])")
    two_days = timedelta(days=2)
    query = promql.over_time("max_over_time", "rate(x[1m])", two_days, timedelta(seconds=1))
    resolution = two_days / promql.MAX_SUBQUERY_POINTS
    assert query.endswith(f"[172800s:{promql.prometheus_duration(resolution)}])")
    assert two_days / resolution <= promql.MAX_SUBQUERY_POINTS + 1


def test_a_trailing_comment_cannot_swallow_the_wrapper() -> None:
    q = promql.extreme_queries("rate(x[5m]) # busy", step=STEP, window=HOUR, resolution=RES)
    assert q is not None and q.max == "max_over_time((\nrate(x[5m]) # busy\n)[3600s:15s])"
    assert promql.is_balanced(q.max)


@pytest.mark.parametrize("expr", ["a) or (b", "(a", "a]", 'x{a="b}', "rate(x[5m]))"])
def test_an_unbalanced_expression_is_not_wrapped(expr: str) -> None:
    assert promql.extreme_queries(expr, step=STEP, window=HOUR, resolution=RES) is None


@pytest.mark.parametrize("value", NASTY)
def test_alert_values_stay_inside_their_literal_when_wrapped(value: str) -> None:
    selector = promql.render('x{host=~"{{host}}"}', {"host": value})
    assert promql.is_vector_selector(selector)  # one selector, the value wholly inside its literal
    derived = promql.render('rate(x{host=~"{{host}}"}[5m])', {"host": value})
    q = promql.extreme_queries(derived, step=STEP, window=HOUR, resolution=RES)
    assert q is not None and q.step_min == f"min_over_time((\n{derived}\n)[30s:15s])"
    assert promql.is_balanced(q.step_min)


def test_the_resolution_is_a_positive_duration() -> None:
    assert PrometheusConfig().resolution == timedelta(seconds=15)
    assert PrometheusConfig.model_validate({"resolution": "1s"}).resolution == timedelta(seconds=1)
    with pytest.raises(ValueError, match="at least 1ms"):
        PrometheusConfig.model_validate({"resolution": "0s"})


def test_an_instant_answer_is_one_point_per_series() -> None:
    body = {"data": {"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1.5, "9"]}]}}
    assert parse_vector({"status": "success", **body}) == [({"a": "b"}, [(1.5, 9.0)])]


# --- summaries -----------------------------------------------------------------------------------


def steps(values: list[float]) -> list[tuple[float, float]]:
    return [(T0.timestamp() + i * 30, v) for i, v in enumerate(values)]


def test_a_spike_between_two_steps_is_the_peak() -> None:
    values = steps([1, 1, 1, 1, 1, 1, 1, 1])
    extremes = Extremes(
        step_min=steps([1, 1, 1, 1, 1, 0.5, 1, 1]),
        step_max=steps([1, 1, 1, 1, 1, 9, 1, 1]),
        min=0.5,
        max=9,
        avg=1.2,
        at=T0.timestamp() + 210,
    )
    plain = summarise(values, alert_at=T0 + timedelta(seconds=120), keep_points=150)
    assert (plain.peak, plain.bands) == (1, [])
    s = summarise(values, alert_at=T0 + timedelta(seconds=120), keep_points=150, extremes=extremes)
    assert (s.min, s.max, s.peak, s.avg) == (0.5, 9, 9, 1.2)
    assert s.peak_at == T0 + timedelta(seconds=150)  # the end of the step that held the spike
    assert s.deviation_at == s.peak_at and s.baseline == 1
    assert s.p95 == 1  # the typical level: one value per step
    assert [(at, v) for at, v in s.points] == [(to_time(t), v) for t, v in values]
    assert s.bands[5] == (T0 + timedelta(seconds=150), 0.5, 9)
    assert all(lo <= v <= hi for (_, v), (_, lo, hi) in zip(s.points, s.bands, strict=True))


def test_a_sample_after_the_last_step_is_the_peak_at_the_window_end() -> None:
    end = T0.timestamp() + 100
    extremes = Extremes(step_max=steps([1, 2, 3]), max=7, at=end)
    s = summarise(steps([1, 2, 3]), alert_at=T0, keep_points=150, extremes=extremes)
    assert (s.peak, s.peak_at, s.avg) == (7, to_time(end), 2)  # avg: the steps', the window's is missing


def test_a_step_without_a_value_keeps_its_extremes() -> None:
    extremes = Extremes(step_min=steps([1, 4, 1]), step_max=steps([1, 8, 1]))
    values = [p for i, p in enumerate(steps([1, 0, 1])) if i != 1]
    s = summarise(values, alert_at=T0, keep_points=150, extremes=extremes)
    assert s.peak == 8 and s.bands[1] == (T0 + timedelta(seconds=30), 4, 8) and len(s.points) == 3


def test_non_finite_extremes_are_left_out() -> None:
    nan = float("nan")
    extremes = Extremes(step_max=steps([nan, 5]), step_min=steps([float("-inf"), 1]), min=nan, max=nan, avg=nan)
    s = summarise(steps([2, 3]), alert_at=T0, keep_points=150, extremes=extremes)
    assert (s.min, s.max, s.avg) == (1, 5, 2.5)


def test_downsampling_keeps_each_buckets_highest_step_maximum() -> None:
    values = steps([float(i % 7) for i in range(3000)])
    highs = [(t, v + 1) for t, v in values]
    highs[1234] = (highs[1234][0], 1000.0)
    s = summarise(values, alert_at=T0, keep_points=100, extremes=Extremes(step_min=values, step_max=highs))
    assert len(s.points) == len(s.bands) <= 100
    assert (to_time(highs[1234][0]), 1000.0) in [(at, hi) for at, _, hi in s.bands]
    assert s.peak == 1000


# --- assembling ----------------------------------------------------------------------------------


def test_extremes_meet_their_series_without_the_metric_name() -> None:
    value = ({"__name__": "x", "instance": "a"}, [(T0.timestamp(), 1.0)])
    result = PromResult(
        PromQueryPlan("x", "x"),
        series=[value],
        extremes={
            "step_max": [({"instance": "a"}, [(T0.timestamp(), 6.0)]), ({"instance": "b"}, [(T0.timestamp(), 2.0)])],
            "max": [({"instance": "a"}, [(T0.timestamp() + 5, 7.0)])],
        },
    )
    found = series_extremes(result)
    a = found[(("instance", "a"),)]
    assert (list(a.step_min), list(a.step_max), a.max, a.min, a.at) == (
        [],
        [(T0.timestamp(), 6.0)],
        7.0,
        None,
        T0.timestamp() + 5,
    )


def test_the_context_carries_the_true_peak_and_says_when_it_could_not() -> None:
    incident = IncidentFacts(1, "k", 1, ["web-1"], T0, None)
    window = Window(T0 - HOUR, T0 + timedelta(minutes=3), 30)
    labels = {"instance": "web-1:9100"}
    series = [(labels, steps([1, 1, 1, 1]))]
    exact = PromResult(
        PromQueryPlan("cpu", "q1"),
        series=series,
        extremes={"step_max": [(labels, steps([1, 1, 40, 1]))], "step_min": [(labels, steps([1, 1, 1, 1]))]},
    )
    rough = PromResult(
        PromQueryPlan("up", "q2"), series=series, extremes={}, extremes_error="timed out after 5s (after 3 attempts)"
    )
    context = assemble(incident, window, [exact, rough], [], EnrichmentConfig(), generated_at=T0)
    cpu, up = context.metrics
    assert (cpu.peak, cpu.peak_at, cpu.bands[2]) == (40, T0 + timedelta(seconds=60), (cpu.points[2][0], 1, 40))
    assert (up.peak, up.bands) == (1, [])
    assert context.missing == [
        "prometheus (up): peaks and minimums only of one value per step: timed out after 5s (after 3 attempts)"
    ]
    assert not context.complete
    assert type(context).model_validate_json(context.model_dump_json()) == context
