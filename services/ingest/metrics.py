"""Ingest's Prometheus metrics; the names are the ones deploy/prometheus/rules/vigil.yml and the Grafana
dashboard query."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("vigil_ingest_requests", "API requests answered, by endpoint and HTTP status", ["endpoint", "code"])
ALERTS_ACCEPTED = Counter(
    "vigil_ingest_alerts_accepted", "Alerts confirmed by the broker, by sender and source", ["sender", "source"]
)
REJECTS = Counter("vigil_ingest_rejects", "Requests refused with a 4xx, by reason", ["reason"])
PUBLISH_SECONDS = Histogram(
    "vigil_ingest_publish_seconds",
    "Time from a request's alerts handed to the publisher to the broker's confirm of the message holding them",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VALUES_ADJUSTED = Counter(
    "vigil_ingest_alert_values_adjusted",
    "Alert values changed to fit Vigil's limits, by kind: labels / annotations (value cut), label_names, "
    "labels_dropped, annotations_dropped, fingerprint (hashed), starts_at / ends_at (impossible time), generatorURL, "
    "receiver, group_key, group_labels, externalURL",
    ["field"],
)
