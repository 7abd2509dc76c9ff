"""Prometheus and Alertmanager for `make run`: Prometheus scrapes Vigil's services and evaluates the example
rules in deploy/prometheus/rules; Alertmanager sends every alert to ingest with the ingest token, exactly as
a production Alertmanager would (bearer token from a credentials file, resolved notifications on)."""

from __future__ import annotations

from pathlib import Path

import yaml

from devstack.alertmanager import Alertmanager
from devstack.prometheus import Prometheus
from shared.config import Settings

REPO = Path(__file__).resolve().parent.parent
RULES = ("host.yml", "vigil.yml")
SERVICES = ("ingest", "correlator", "enricher", "reporter", "web")


def prometheus_config(
    settings: Settings, *, prometheus_port: int, alertmanager_port: int, extra_targets: dict[str, list[str]]
) -> str:
    vigil_targets = [
        {"targets": [f"{settings.host}:{getattr(settings, f'{name}_port')}"], "labels": {"service": name}}
        for name in SERVICES
    ]
    jobs = [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prometheus_port}"]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]},
        {"job_name": "vigil", "scrape_interval": "5s", "static_configs": vigil_targets},
        *({"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in extra_targets.items()),
    ]
    config = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "rules" / name) for name in RULES],
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(
    settings: Settings, token_file: Path, *, group_wait: str = "10s", group_interval: str = "1m"
) -> str:
    config = {
        "route": {
            "receiver": "vigil",
            "group_by": ["alertname", "instance"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "vigil",
                "webhook_configs": [
                    {
                        "url": f"http://{settings.host}:{settings.ingest_port}/api/v1/webhooks/alertmanager",
                        "send_resolved": True,
                        # Ingest refuses a notification with more alerts than it takes (413, never retried).
                        "max_alerts": settings.ingest_max_alerts,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(
    base: Path,
    port: int,
    settings: Settings,
    alertmanager_port: int,
    extra_targets: dict[str, list[str]] | None = None,
) -> Prometheus:
    config = prometheus_config(
        settings, prometheus_port=port, alertmanager_port=alertmanager_port, extra_targets=extra_targets or {}
    )
    server = Prometheus(base, port, config)
    print(f"vigil: starting Prometheus on 127.0.0.1:{port}", flush=True)
    server.start()
    return server


def start_alertmanager(base: Path, port: int, settings: Settings, ingest_token: str, **timing: str) -> Alertmanager:
    base.mkdir(parents=True, exist_ok=True)
    token_file = base / "ingest_token"
    token_file.write_text(ingest_token)
    token_file.chmod(0o600)
    server = Alertmanager(base, port, alertmanager_config(settings, token_file, **timing))
    print(f"vigil: starting Alertmanager on 127.0.0.1:{port}", flush=True)
    server.start()
    return server
