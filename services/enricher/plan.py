"""Which queries one incident needs: pure, from the incident's hosts and alerts and the config's templates."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from services.enricher import logql, promql
from services.enricher.config import EnrichmentConfig

# An incident spanning hundreds of hosts would make queries too long for a URL and too broad to explain
# anything; the first hosts (sorted) are enough to show the pattern.
MAX_HOSTS = 50


@dataclass(frozen=True)
class AlertFacts:
    alertname: str
    host: str | None
    labels: dict[str, str]
    generator_url: str
    starts_at: datetime
    ends_at: datetime | None
    severity: str = ""


@dataclass(frozen=True)
class IncidentFacts:
    id: int
    key: str
    revision: int
    hosts: list[str]
    first_alert_at: datetime
    resolved_at: datetime | None
    alerts: list[AlertFacts] = field(default_factory=list)


@dataclass(frozen=True)
class PromQueryPlan:
    name: str
    query: str
    unit: str = ""
    # For an alert's own expression: the labels of the alerts it fired for. A series is kept only if it agrees
    # with one of them on every label both carry, so `avg by (instance) (...)` shows the alerting instance,
    # not the ten busiest of the fleet. Empty: every series is kept.
    alert_labels: tuple[dict[str, str], ...] = ()

    def wants(self, series_labels: dict[str, str]) -> bool:
        if not self.alert_labels:
            return True
        return any(all(labels[k] == v for k, v in series_labels.items() if k in labels) for labels in self.alert_labels)


@dataclass(frozen=True)
class LokiQueryPlan:
    kind: Literal["logs", "errors", "security"]
    query: str
    limit: int  # lines kept for a log query; series allowed for the metric query (`errors`)


@dataclass(frozen=True)
class SkippedExpressions:
    """Alert expressions not run: their generatorURL names a Prometheus that is neither the configured one nor
    allowed. Anyone who can send an alert could otherwise have any PromQL evaluated on our Prometheus."""

    host: str  # the generatorURL's host:port; empty when it names no http(s) host
    alertnames: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    prometheus: list[PromQueryPlan]
    loki: list[LokiQueryPlan]
    skipped: list[SkippedExpressions] = field(default_factory=list)


def template_values(incident: IncidentFacts) -> dict[str, str]:
    """Regexes for the template variables; a variable without any value is absent (its queries are skipped)."""
    hosts = sorted({h for h in incident.hosts if h} | {a.host for a in incident.alerts if a.host})[:MAX_HOSTS]
    instances = sorted({a.labels.get("instance", "") for a in incident.alerts} - {""})[:MAX_HOSTS]
    jobs = sorted({a.labels.get("job", "") for a in incident.alerts} - {""})[:MAX_HOSTS]
    values: dict[str, str] = {}
    if host_regex := promql.alternation(hosts):
        values["host_regex"] = host_regex
    instance_parts = [r for r in (promql.alternation(hosts, optional_port=True), promql.alternation(instances)) if r]
    if instance_parts:
        values["instance_regex"] = "|".join(instance_parts)
    if job_regex := promql.alternation(jobs):
        values["job_regex"] = job_regex
    return values


def _renderable(template: str, values: dict[str, str]) -> bool:
    return all(name in values for name in promql.placeholders(template))


def alert_expressions(alerts: Sequence[AlertFacts], limit: int, trusted_hosts: Set[str]) -> list[PromQueryPlan]:
    """One query per distinct expression (threshold removed), remembering the labels of every alert it fired;
    only expressions whose generatorURL names one of `trusted_hosts` (`host:port`, see promql.trusted_hosts)."""
    names: dict[str, str] = {}
    labels: dict[str, list[dict[str, str]]] = {}
    for alert in sorted(alerts, key=lambda a: a.starts_at):
        expr = promql.alert_expression(alert.generator_url)
        if expr is None or promql.url_host(alert.generator_url) not in trusted_hosts:
            continue
        query = promql.without_threshold(expr)
        if query not in names:
            if len(names) >= limit:
                continue
            names[query] = f"alert: {alert.alertname}"
        labels.setdefault(query, []).append(alert.labels)
    return [PromQueryPlan(name=names[q], query=q, alert_labels=tuple(labels[q])) for q in names]


def skipped_expressions(alerts: Sequence[AlertFacts], trusted_hosts: Set[str]) -> list[SkippedExpressions]:
    """Per untrusted host, the names of the alerts whose expression it would have supplied."""
    names: dict[str, set[str]] = {}
    for alert in alerts:
        host = promql.url_host(alert.generator_url)
        if host not in trusted_hosts and promql.alert_expression(alert.generator_url) is not None:
            names.setdefault(host or "", set()).add(alert.alertname)
    return [SkippedExpressions(host, tuple(sorted(names[host]))) for host in sorted(names)]


def build_plan(incident: IncidentFacts, config: EnrichmentConfig, *, trusted_hosts: Set[str]) -> Plan:
    """`trusted_hosts`: the `host:port`s of the Prometheus servers whose alert expressions may be run."""
    values = template_values(incident)
    prom: list[PromQueryPlan] = []
    skipped: list[SkippedExpressions] = []
    if config.prometheus.alert_expression:
        prom += alert_expressions(incident.alerts, config.prometheus.max_alert_expressions, trusted_hosts)
        skipped = skipped_expressions(incident.alerts, trusted_hosts)
    for template in config.prometheus.queries:
        if _renderable(template.query, values):
            prom.append(PromQueryPlan(template.name, promql.render(template.query, values), template.unit))
    loki: list[LokiQueryPlan] = []
    limits = {
        "logs": config.loki.line_limit,
        "errors": config.loki.max_series_per_query,
        "security": config.loki.security_limit,
    }
    for kind in ("logs", "errors", "security"):
        template = getattr(config.loki, kind)
        if template and _renderable(template, values):
            loki.append(LokiQueryPlan(kind, logql.render(template, values), limits[kind]))
    return Plan(prometheus=prom, loki=loki, skipped=skipped)
