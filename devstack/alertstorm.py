"""Alertmanager-shaped traffic for the demo, the end-to-end benchmark and the fault drills: webhook bodies
exactly as Alertmanager's webhook notifier sends them (version 4), and a sender that retries like it does
(5xx and connection errors, with backoff; never 4xx)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from devstack.keepalive_post import KeepAlivePost
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
    """Posts webhooks the way Alertmanager does: retry 5xx and connection errors with backoff until `give_up_s`.

    Over `KeepAlivePost`: the load generator shares the machine with Vigil, and with a general-purpose client it set
    the pace of small webhooks itself (see devstack/keepalive_post.py for the figures)."""

    url: str
    token: str
    give_up_s: float = 120
    timeout_s: float = 10
    latencies_ms: list[float] = field(default_factory=list)
    retries: int = 0
    # The seconds (of time.monotonic) in which a webhook got 5xx or no answer: how long senders saw Vigil unavailable.
    unavailable_at: set[int] = field(default_factory=set)
    _http: KeepAlivePost | None = None

    async def send(self, body: dict[str, Any] | bytes) -> bool:
        """True when ingest accepted the webhook (2xx); False when it refused it (4xx) or we gave up.

        `body` may be the JSON already encoded, so a load generator can prepare its webhooks before the clock starts.
        """
        if self._http is None:
            # No connection limit: Alertmanager opens what its groups need.
            self._http = KeepAlivePost(
                self.url, {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            )
        deadline = time.monotonic() + self.give_up_s
        pause = 0.1
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        while True:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    status = await self._http.post(content)
                if status < 300:
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                    return True
                if status < 500:
                    return False
            except (OSError, EOFError, TimeoutError):  # no answer; one this client cannot read is raised
                pass
            self.unavailable_at.add(int(time.monotonic()))
            if time.monotonic() > deadline:
                return False
            self.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def grouped_storm(
    alerts: int,
    *,
    t0: datetime,
    prefix: str = "storm",
    hosts: int = 2_000,
    alertnames: int = 20,
    per_webhook: int = 50,
    resolve_every: int = 10,
    first: int = 0,
) -> list[dict[str, Any]]:
    """A storm as Alertmanager's default grouping (by alert name) sends it: each webhook holds one alert name across
    many of `hosts` hosts, so each of its alerts moves a different incident (the default rule groups by host). Every
    label set is unique (a `storm` label numbers the webhook). From the second round of `alertnames` webhooks on, one
    alert in `resolve_every` is the resolve of an alert of the same name sent a round earlier. `alerts` is rounded
    down to whole webhooks. `first` numbers the first webhook, so that a storm made in parts goes on with the same
    hosts and new label sets."""
    webhooks: list[dict[str, Any]] = []
    fired: list[list[dict[str, Any]]] = []
    next_host = first * per_webhook
    for i in range(alerts // per_webhook):
        number = first + i
        name = f"{prefix.capitalize()}Alert{number % alertnames:02d}"
        resolving = per_webhook // resolve_every if i >= alertnames else 0
        firing = []
        for _ in range(per_webhook - resolving):
            host = f"{prefix}-host-{next_host % hosts:04d}"
            next_host += 1
            labels = {"storm": str(number)}
            firing.append(alert(name, host, starts_at=t0 + timedelta(milliseconds=number), labels=labels))
        fired.append(firing)
        resolved = [
            {**earlier, "status": "resolved", "endsAt": _ts(t0 + timedelta(milliseconds=number, seconds=1))}
            for earlier in (fired[i - alertnames][:resolving] if resolving else [])
        ]
        webhooks.append(webhook([*firing, *resolved], group_by=("alertname",)))
    return webhooks
