"""Alertmanager-shaped traffic for the demo, the end-to-end benchmark and the fault drills: webhook bodies
exactly as Alertmanager's webhook notifier sends them (version 4), and a sender that retries like it does
(5xx and connection errors, with backoff; never 4xx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from shared.fingerprint import label_fingerprint


def alert(
    alertname: str,
    host: str,
    *,
    starts_at: datetime,
    severity: str = "warning",
    status: str = "firing",
    ends_at: datetime | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    expr: str = "",
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, "instance": f"{host}:9100", "job": "node", "severity": severity}
    all_labels.update(labels or {})
    generator = ""
    if expr:
        generator = f"http://prometheus.local/graph?g0.expr={quote(expr, safe='')}&g0.tab=1"
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations or {"summary": f"{alertname} on {host}"},
        "startsAt": _ts(starts_at),
        "endsAt": _ts(ends_at) if ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": generator,
        "fingerprint": label_fingerprint(all_labels),
    }


def webhook(alerts: list[dict[str, Any]], *, receiver: str = "vigil", group_by: Iterable[str] = ("instance",)) -> dict:
    group_labels = {name: alerts[0]["labels"].get(name, "") for name in group_by} if alerts else {}
    common = _common(a["labels"] for a in alerts)
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": "{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": _common(a["annotations"] for a in alerts),
        "externalURL": "http://alertmanager.local",
        "alerts": alerts,
    }


def occurrence(a: dict[str, Any]) -> tuple[str, str]:
    """What the correlator stores one row for: (fingerprint, startsAt)."""
    return a["fingerprint"], a["startsAt"]


def _common(maps: Iterable[dict[str, str]]) -> dict[str, str]:
    iterator = iter(maps)
    first = dict(next(iterator, {}))
    for other in iterator:
        first = {k: v for k, v in first.items() if other.get(k) == v}
    return first


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class WebhookSender:
    """Posts webhooks the way Alertmanager does: retry 5xx and connection errors with backoff until `give_up_s`."""

    url: str
    token: str
    give_up_s: float = 120
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))
    latencies_ms: list[float] = field(default_factory=list)
    retries: int = 0
    # The seconds (of time.monotonic) in which a webhook got 5xx or no answer: how long senders saw Vigil unavailable.
    unavailable_at: set[int] = field(default_factory=set)

    async def send(self, body: dict[str, Any] | bytes) -> bool:
        """True when ingest accepted the webhook (2xx); False when it refused it (4xx) or we gave up.

        `body` may be the JSON already encoded, so a load generator can prepare its webhooks before the clock starts.
        """
        deadline = time.monotonic() + self.give_up_s
        pause = 0.1
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        while True:
            started = time.perf_counter()
            try:
                answer = await self.client.post(self.url, content=content, headers=headers)
                if answer.status_code < 300:
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                    return True
                if answer.status_code < 500:
                    return False
            except httpx.TransportError:
                pass
            self.unavailable_at.add(int(time.monotonic()))
            if time.monotonic() > deadline:
                return False
            self.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
