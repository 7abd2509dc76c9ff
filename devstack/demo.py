"""`make demo`: `make run` plus a scripted storm, so a newcomer sees real incidents with real context within a
minute. Alerts go through Alertmanager's own API (as Prometheus would send them), Alertmanager notifies ingest,
and the rest is the normal pipeline. The storm:

- Vigil's own ingest: a busy alert whose expression Prometheus really has data for;
- web-1: HostDown and HighErrorRate firing, then resolving after about 40 s;
- db-1: DiskAlmostFull (critical) and a "FlappyProbe" that switches between firing and resolved;
- this machine (the node exporter on loopback, when Debian's prometheus-node-exporter is installed): HighLoad
  with a real expression, so the enricher charts real CPU, memory, disk and network series;
- a Fail2Ban ban on web-1 as a generic event through ingest, with its log line in Loki.

Logs come from the project's own Loki-API server (devstack.fakeloki; no Loki is packaged for Debian), loaded
with error bursts and Fail2Ban lines for the demo hosts. docker-compose.yml runs the real Loki.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

log = logging.getLogger("demo")

RESOLVE_AFTER_S = 40
FLAP_EVERY_S = 8
REPOST_EVERY_S = 10


@dataclass
class DemoAlert:
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    expr: str
    starts_at: datetime
    ends_at: datetime | None = None
    # Seconds into the storm: when Prometheus would start sending it, and when it would resolve.
    fire_after_s: float = 0
    resolve_after_s: float | None = None

    def payload(self, prometheus_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": {"alertname": self.alertname, **self.labels},
            "annotations": self.annotations,
            "startsAt": _ts(self.starts_at),
            "generatorURL": str(httpx.URL(f"{prometheus_url}/graph", params={"g0.expr": self.expr, "g0.tab": "1"})),
        }
        if self.ends_at is not None:
            body["endsAt"] = _ts(self.ends_at)
        return body


def storm(now: datetime, local_instance: str | None, vigil_instance: str) -> list[DemoAlert]:
    alerts = [
        # About Vigil itself, so the enricher charts real series from the Prometheus that scrapes it.
        DemoAlert(
            "VigilIngestBusy",
            {"instance": vigil_instance, "job": "vigil", "service": "ingest", "severity": "warning"},
            {"summary": "ingest is taking more requests than usual", "runbook_url": "https://runbooks.example/ingest"},
            'sum by (instance) (rate(vigil_ingest_requests_total{job="vigil"}[1m])) > 0.01',
            now,
            # Late enough for Prometheus to hold a few scrapes of it, and resolved, so the final enrichment
            # charts the whole episode.
            fire_after_s=20,
            resolve_after_s=RESOLVE_AFTER_S + 15,
        ),
        DemoAlert(
            "HostDown",
            {"instance": "web-1:9100", "job": "node", "severity": "critical"},
            {"summary": "web-1 is not answering scrapes", "runbook_url": "https://runbooks.example/host-down"},
            'up{job="node", instance="web-1:9100"} == 0',
            now,
            resolve_after_s=RESOLVE_AFTER_S,
        ),
        DemoAlert(
            "HighErrorRate",
            {"instance": "web-1:9100", "job": "nginx", "severity": "warning"},
            {"summary": "5xx above 5% on web-1", "description": "Upstream timeouts to the app servers."},
            'sum(rate(nginx_http_requests_total{status=~"5..", instance="web-1:9100"}[5m])) > 0.05',
            now + timedelta(seconds=5),
            fire_after_s=5,
            resolve_after_s=RESOLVE_AFTER_S,
        ),
        DemoAlert(
            "DiskAlmostFull",
            {"instance": "db-1:9100", "job": "node", "severity": "critical", "mountpoint": "/var/lib/postgresql"},
            {"summary": "Disk on db-1 will be full within 4 hours", "actions": "Rotate WAL; extend the volume."},
            'predict_linear(node_filesystem_avail_bytes{instance="db-1:9100"}[1h], 4*3600) < 0',
            now,
        ),
    ]
    if local_instance:
        alerts.append(
            DemoAlert(
                "HighLoad",
                {"instance": local_instance, "job": "node", "severity": "warning"},
                {"summary": "Load on this machine is above its usual level"},
                f'node_load1{{instance="{local_instance}"}} > 0',
                now,
            )
        )
    return alerts


def flappy(now: datetime) -> DemoAlert:
    return DemoAlert(
        "FlappyProbe",
        {"instance": "db-1:9100", "job": "blackbox", "severity": "warning"},
        {"summary": "The probe of db-1 keeps failing and recovering"},
        'probe_success{instance="db-1:9100"} == 0',
        now,
    )


def loki_lines(now: datetime) -> list[dict[str, Any]]:
    """Push bodies for the fake Loki: error bursts on the demo hosts and a Fail2Ban ban on web-1."""
    streams = []
    for host, job, count in (("web-1", "nginx", 40), ("db-1", "postgresql", 12)):
        values = []
        for i in range(count):
            at = now - timedelta(minutes=10) + timedelta(seconds=i * 15)
            values.append([str(_ns(at)), f"{at:%Y/%m/%d %H:%M:%S} [error] upstream timed out (110) request {i}"])
        streams.append({"stream": {"host": host, "job": job}, "values": values})
    ban_at = now - timedelta(minutes=2)
    ban = f"{ban_at:%Y-%m-%d %H:%M:%S},123 fail2ban.actions [812]: NOTICE  [sshd] Ban 203.0.113.7"
    streams.append({"stream": {"host": "web-1", "job": "fail2ban"}, "values": [[str(_ns(ban_at)), ban]]})
    return [{"streams": streams}]


@dataclass
class Storm:
    alertmanager_url: str
    prometheus_url: str
    ingest_url: str
    ingest_token: str
    loki_url: str
    local_instance: str | None
    vigil_instance: str
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=5))

    async def post_alerts(self, alerts: list[DemoAlert]) -> None:
        body = [a.payload(self.prometheus_url) for a in alerts]
        (await self.client.post(f"{self.alertmanager_url}/api/v2/alerts", json=body)).raise_for_status()

    async def run(self) -> None:
        now = datetime.now(UTC)
        for push in loki_lines(now):
            (await self.client.post(f"{self.loki_url}/loki/api/v1/push", json=push)).raise_for_status()
        ban = {
            "source": "fail2ban",
            "host": "web-1",
            "kind": "ban",
            "severity": "warning",
            "labels": {"jail": "sshd", "ip": "203.0.113.7"},
            "message": "Ban 203.0.113.7 after 5 failed SSH logins",
        }
        answer = await self.client.post(
            f"{self.ingest_url}/api/v1/events", json=ban, headers={"Authorization": f"Bearer {self.ingest_token}"}
        )
        answer.raise_for_status()
        alerts = storm(now, self.local_instance, self.vigil_instance)
        flapping = flappy(now)
        started = time.monotonic()
        where = "web-1, db-1, Vigil's ingest" + (" and this machine" if self.local_instance else "")
        say(f"storm: {len(alerts) + 1} alerts on {where}")
        while time.monotonic() - started < RESOLVE_AFTER_S + 30:
            elapsed = time.monotonic() - started
            for a in alerts:
                if a.resolve_after_s is not None and elapsed > a.resolve_after_s and a.ends_at is None:
                    a.ends_at = datetime.now(UTC)
                    say(f"storm: {a.alertname} on {a.labels['instance']} resolves")
            # The flapping probe: resolved in odd periods, firing again (a new occurrence) in even ones.
            period = int(elapsed // FLAP_EVERY_S)
            if period % 2 == 1 and flapping.ends_at is None:
                flapping.ends_at = datetime.now(UTC)
            elif period % 2 == 0 and flapping.ends_at is not None:
                flapping = flappy(datetime.now(UTC))
            firing_now = [a for a in alerts if elapsed >= a.fire_after_s]
            for a in firing_now:
                if a.fire_after_s and a.starts_at < now + timedelta(seconds=a.fire_after_s):
                    a.starts_at = datetime.now(UTC)
            await self.post_alerts([*firing_now, flapping])
            await asyncio.sleep(min(REPOST_EVERY_S, FLAP_EVERY_S) / 2)
        say("storm: done; incidents, context and reports are on the dashboard")

    async def aclose(self) -> None:
        await self.client.aclose()


def say(text: str) -> None:
    print(json.dumps({"demo": text}), flush=True)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1e9)
