"""The enricher's config file (`VIGIL_ENRICHMENT_CONFIG`, default deploy/enrichment.yml): window, step,
limits, fault handling, and the PromQL/LogQL templates. Every template is checked when the file loads, so a
template that would let an alert's label escape its string literal stops the service at start."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from services.enricher import logql, promql

# What a template may use; each value is a regex or literal built from the incident, escaped on substitution.
PROM_VARIABLES = ("host_regex", "instance_regex", "job_regex")
LOKI_VARIABLES = ("host_regex", "job_regex")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> object:
    """`90s`, `5m`, `1h30m`, `500ms` (Prometheus style) or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if not text or _DURATION.sub("", text):
            raise ValueError(f"not a duration: {value!r} (e.g. 30s, 5m, 1h)")
        return timedelta(seconds=sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(text)))
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowConfig(_Strict):
    before: Duration = Field(timedelta(hours=1), description="How far before the first alert the window starts.")
    after: Duration = Field(timedelta(0), description="How far past the resolution it ends (never past now).")
    max_span: Duration = Field(timedelta(days=2))
    max_points: int = Field(300, ge=10, le=11_000, description="Points per series: step = window / max_points.")
    min_step: Duration = Field(timedelta(seconds=15))


class UpstreamConfig(_Strict):
    timeout: Duration = Field(
        timedelta(seconds=5), description="Per request; Prometheus is also told it, as the query's `timeout`."
    )
    attempts: int = Field(3, ge=1, le=10, description="Tries per query, with exponential backoff between them.")
    backoff: Duration = Field(timedelta(milliseconds=200))
    budget: Duration = Field(timedelta(seconds=20), description="Total time for all of one incident's queries.")
    concurrency: int = Field(8, ge=1, le=100, description="Queries in flight to this upstream, all incidents.")
    max_response_bytes: int = Field(16 * 1024**2, ge=1024, description="A larger answer is refused, not parsed.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    breaker_cooldown: Duration = Field(timedelta(seconds=30))


class PromQuery(_Strict):
    name: str = Field(min_length=1, max_length=100)
    query: str = Field(min_length=1)
    unit: str = ""

    @field_validator("query")
    @classmethod
    def _safe(cls, value: str) -> str:
        promql.check_template(value, PROM_VARIABLES)
        return value


class PrometheusConfig(UpstreamConfig):
    alert_expression: bool = Field(True, description="Query each alert's own expression from its generatorURL.")
    max_alert_expressions: int = Field(5, ge=0)
    max_series_per_query: int = Field(
        10, ge=1, le=1000, description="Series kept per query; also sent as `limit` (Prometheus versions that know it)."
    )
    queries: list[PromQuery] = Field(default_factory=list)
    resolution: Duration = Field(
        timedelta(seconds=15),
        description="How often a derived expression (rate, sum, ...) is evaluated for its peaks and minimums: "
        "no coarser than the scrape interval, or a spike between two evaluations goes unseen.",
    )

    @field_validator("resolution")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(milliseconds=1):
            raise ValueError("must be at least 1ms")
        return value


class LokiConfig(UpstreamConfig):
    logs: str | None = Field(None, description="Log lines of the incident's hosts.")
    errors: str | None = Field(None, description="A metric query: error lines per minute, `[1m]` ranges.")
    security: str | None = Field(None, description="Fail2Ban lines; Ban/Unban are parsed.")
    line_limit: int = Field(200, ge=1, le=5000, description="Log lines kept per incident.")
    security_limit: int = Field(500, ge=1, le=5000)
    max_line_bytes: int = Field(1000, ge=80, le=65_536)
    max_total_bytes: int = Field(200_000, ge=1000)
    max_series_per_query: int = Field(
        500, ge=1, le=10_000, description="A metric answer with more series is refused (Loki's max_query_series)."
    )
    burst_min_errors: int = Field(5, ge=1, description="A minute with at least this many errors, and ...")
    burst_factor: float = Field(3.0, ge=1, description="... this many times the window's median, is a burst.")

    @field_validator("logs", "errors", "security")
    @classmethod
    def _safe(cls, value: str | None) -> str | None:
        if value is not None:
            logql.check_template(value, LOKI_VARIABLES)
        return value


class EnrichmentConfig(_Strict):
    window: WindowConfig = Field(default_factory=WindowConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    loki: LokiConfig = Field(default_factory=LokiConfig)
    downsample_points: int = Field(150, ge=10, le=5000, description="Stored points per series (min and max kept).")
    concurrency: int = Field(4, ge=1, le=64, description="Incidents enriched at once.")


class EnrichmentConfigError(ValueError):
    pass


def load_config(path: Path) -> EnrichmentConfig:
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EnrichmentConfigError(f"{path}: {exc}") from exc
    try:
        return EnrichmentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise EnrichmentConfigError(f"{path}: {problems}") from exc
