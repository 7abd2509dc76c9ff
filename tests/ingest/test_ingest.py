"""Ingest against the real broker: what a sender posts is what a subscriber of `vigil.alerts` reads, and
everything a client can get wrong is a JSON 4xx naming the problem."""

from __future__ import annotations

import asyncio
import base64
import configparser
import gzip
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from devstack.procs import free_port
from services.ingest.app import build_app
from shared.config import Settings
from shared.contracts import ALERTS_EXCHANGE
from shared.fingerprint import label_fingerprint
from shared.messaging import frame_publisher
from tests.conftest import running
from tests.ingest.webhooks import (
    AUTH,
    EVENTS,
    WEBHOOK,
    AlertTap,
    am_alert,
    envelopes,
    notification,
    notifications,
    received,
)


@asynccontextmanager
async def ingest(settings: Settings, *, frames: bool = True) -> AsyncIterator[str]:
    async with running(build_app(settings, frames=frames), settings.ingest_port) as url:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("ingest never became ready")
        yield url


@pytest.fixture
def ingest_settings(amqp_url: str, tmp_path: Path) -> Settings:
    """The test's own vhost and a free port; ingest needs no database."""
    return Settings(
        amqp_url=amqp_url,
        state_dir=tmp_path,
        ingest_port=free_port(),
        ingest_token="test-sender-token-0001",
        retry_delays_ms=(100, 200),
        publish_timeout_s=3,
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_each_alert_of_a_notification_arrives_once_with_its_group(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    sent = notification(am_alert("HostDown"), am_alert("HostDown", instance="db2:9100", severity="warning"))
    sent["alerts"][1]["status"] = "resolved"
    sent["alerts"][1]["endsAt"] = "2026-11-25T10:05:00Z"
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + WEBHOOK, json=sent, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"status": "accepted", "accepted": 2, "sender": "alertmanager"}
        [message] = await tap.take(1)
    # One message for the notification, on `alerts.alertmanager`, its alerts in the order sent.
    assert (message.routing_key, message.type) == ("alerts.alertmanager", "alerts.received")
    [envelope] = notifications([message])
    assert envelope.producer == "ingest"
    assert [a.alert.labels["instance"] for a in envelope.data.alerts] == ["db1:9100", "db2:9100"]
    first, second = envelope.data.alerts
    assert first.sender == "alertmanager" and first.source == "alertmanager"
    assert first.receiver == "vigil"
    assert first.group_key == sent["groupKey"]
    assert first.group_labels == {"alertname": "HostDown"}
    assert first.external_url == "http://alertmanager:9093"
    for raw, original in zip(json.loads(message.body)["data"]["alerts"], sent["alerts"], strict=True):
        for key in ("labels", "annotations", "generatorURL", "fingerprint", "status"):
            assert raw["alert"][key] == original[key]
    assert first.alert.starts_at.isoformat() == "2026-11-25T10:00:00.123000+00:00"
    assert first.alert.ends_at is None
    assert second.alert.ends_at is not None
    messages = [message]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)


async def test_webhooks_sent_together_share_messages_and_keep_their_own_sender_and_group(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    """One alert per webhook, 60 at once from two senders: those that arrived while an earlier message was being
    confirmed share a message (coalesce.py), and every alert still carries its own sender and group."""
    ingest_settings = ingest_settings.model_copy(update={"ingest_tokens": {"grafana": _secret("g-secret")}})
    senders = [("alertmanager", AUTH), ("grafana", {"Authorization": "Bearer g-secret"})]

    def webhook(n: int) -> dict[str, Any]:
        sent = notification(am_alert("HostDown", instance=f"host-{n}:9100"))
        sent["groupKey"] = f'{{}}:{{instance="host-{n}:9100"}}'
        return sent

    async def post(n: int) -> None:
        async with http.post(url + WEBHOOK, json=webhook(n), headers=senders[n % 2][1]) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["accepted"] == 1

    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        before = await _metrics(http, url)
        await asyncio.gather(*(post(n) for n in range(60)))
        messages = await tap.take(1, settle=1.0)
        after = await _metrics(http, url)
    alerts = received(messages)
    by_instance = {a.alert.labels["instance"]: a for a in alerts}
    assert len(alerts) == len(by_instance) == 60
    for n in range(60):
        alert = by_instance[f"host-{n}:9100"]
        assert (alert.sender, alert.group_key) == (senders[n % 2][0], f'{{}}:{{instance="host-{n}:9100"}}')
    assert 1 < len(messages) < 60, "webhooks sent at once were not merged"
    assert {m.type for m in messages} == {"alerts.received"}
    count, total = "vigil_ingest_notifications_per_message_count", "vigil_ingest_notifications_per_message_sum"
    assert after[count] - before.get(count, 0) == len(messages)
    assert after[total] - before.get(total, 0) == 60


async def test_grafana_extra_fields_travel_with_the_alert(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    alert = am_alert("CPUHigh") | {
        "values": {"B": 97.5},
        "valueString": "[ var='B' value=97.5 ]",
        "dashboardURL": "http://grafana/d/x",
        "silenceURL": "http://grafana/alerting/silence/new",
    }
    sent = notification(alert) | {"orgId": 1, "title": "[FIRING:1] CPUHigh", "state": "alerting", "version": "1"}
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + WEBHOOK, json=sent, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        [message] = await tap.take(1)
    [raw] = [a["alert"] for a in json.loads(message.body)["data"]["alerts"]]
    assert raw["values"] == {"B": 97.5}
    assert raw["dashboardURL"] == "http://grafana/d/x"


async def test_senders_by_bearer_and_basic_auth_are_named_on_the_message(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    ingest_settings = ingest_settings.model_copy(
        update={"ingest_tokens": {"grafana": _secret("g-secret"), "cron": _secret("c")}}
    )
    basic = base64.b64encode(b"grafana:g-secret").decode()
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        for header in ("Bearer g-secret", f"Basic {basic}", "bearer test-sender-token-0001"):
            async with http.post(url + WEBHOOK, json=notification(am_alert()), headers={"Authorization": header}) as r:
                assert r.status == 200, await r.text()
        messages = await tap.take(3)
    assert sorted(a.sender for a in received(messages)) == ["alertmanager", "grafana", "grafana"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        "Bearer ",
        "Token test-sender-token-0001",
        "Basic " + base64.b64encode(b"cron:test-sender-token-0001").decode(),  # right token, wrong sender name
        "Basic !!!notbase64",
        "Bearer test-sender-token-0001-and-more",
    ],
)
async def test_missing_or_wrong_token_is_401_and_nothing_is_published(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + WEBHOOK, json=notification(am_alert()), headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"] == "unauthorized"
            assert "Bearer" in resp.headers["WWW-Authenticate"]
        assert await tap.take(0, settle=0.3) == []


async def test_without_any_token_everything_is_401_and_readyz_says_why(
    ingest_settings: Settings, http: aiohttp.ClientSession
) -> None:
    ingest_settings = ingest_settings.model_copy(update={"ingest_token": None, "ingest_tokens": {}})
    async with running(build_app(ingest_settings), ingest_settings.ingest_port) as url:
        for _ in range(100):
            async with http.get(url + "/readyz") as resp:
                ready = await resp.json()
            if ready["checks"].get("broker"):
                break
            await asyncio.sleep(0.05)
        assert resp.status == 503 and ready["checks"] == {"broker": True, "consumers": True, "sender_tokens": False}
        async with http.post(url + WEBHOOK, json=notification(am_alert()), headers=AUTH) as resp:
            assert resp.status == 401
            assert "no sender tokens are configured" in (await resp.json())["message"]


async def test_generic_event_becomes_an_alert_with_explicit_fields_winning(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    event = {
        "source": "fail2ban",
        "host": "vpn1",
        "kind": "ban",
        "severity": "warning",
        "labels": {"jail": "sshd", "ip": "203.0.113.7", "host": "spoofed", "alertname": "spoofed"},
        "message": "Banned 203.0.113.7 after 5 failures",
        "time": "2026-11-25T10:00:00+03:00",
    }
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + EVENTS, json=event, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
        [message] = await tap.take(1)
    [envelope] = envelopes([message])
    alert = envelope.data.alert
    expected_labels = {
        "jail": "sshd",
        "ip": "203.0.113.7",
        "host": "vpn1",
        "alertname": "ban",
        "severity": "warning",
        "source": "fail2ban",
    }
    assert message.routing_key == "alert.firing.warning.ban"
    assert envelope.data.source == "event" and envelope.data.sender == "alertmanager"
    assert alert.labels == expected_labels
    assert alert.annotations == {"summary": "Banned 203.0.113.7 after 5 failures"}
    assert alert.starts_at.isoformat() == "2026-11-25T10:00:00+03:00"
    assert alert.fingerprint == label_fingerprint(expected_labels)
    assert answer["fingerprints"] == [alert.fingerprint]


async def test_an_array_of_events_is_one_request(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    events = [{"source": "cron", "host": f"h{i}", "kind": "backup_failed", "severity": "error"} for i in range(3)]
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + EVENTS, json=events, headers=AUTH) as resp:
            assert resp.status == 200
            assert (await resp.json())["accepted"] == 3
        messages = await tap.take(3)
    assert sorted(e.data.alert.labels["host"] for e in envelopes(messages)) == ["h0", "h1", "h2"]
    assert {m.routing_key for m in messages} == {"alert.firing.error.backup_failed"}


def _post(body: bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {"data": body, "headers": headers}


@pytest.mark.parametrize(
    ("path", "request_kwargs", "status", "error", "field"),
    [
        (WEBHOOK, _post(b"{not json"), 400, "invalid_json", "body"),
        (WEBHOOK, _post(b"\xff\xfe\x00"), 400, "invalid_json", "body"),
        (WEBHOOK, _post(b"[]"), 422, "invalid_payload", "body"),
        (WEBHOOK, _post(json.dumps({"status": "firing"}).encode()), 422, "invalid_payload", "groupKey"),
        (
            WEBHOOK,
            _post(json.dumps(notification(am_alert() | {"startsAt": "yesterday"})).encode()),
            422,
            "invalid_payload",
            "alerts.0.startsAt",
        ),
        (
            WEBHOOK,
            _post(json.dumps(notification(am_alert() | {"labels": {"alertname": 5}})).encode()),
            422,
            "invalid_payload",
            "alerts.0.labels.alertname",
        ),
        (
            WEBHOOK,
            _post(json.dumps(notification(am_alert() | {"labels": {"alertname": "a\u0000b"}})).encode()),
            422,
            "invalid_payload",
            "alerts.0.labels.alertname",
        ),
        (WEBHOOK, _post(b"{}", "text/plain"), 415, "unsupported_media_type", None),
        (WEBHOOK, _post(b"{}", None), 415, "unsupported_media_type", None),
        (EVENTS, _post(json.dumps({"source": "x", "host": "h"}).encode()), 422, "invalid_payload", "kind"),
        (
            EVENTS,
            _post(json.dumps({"source": "x", "host": "h", "kind": "k", "severity": "dire"}).encode()),
            422,
            "invalid_payload",
            "severity",
        ),
        (EVENTS, _post(json.dumps([{"source": "x", "host": "h"}]).encode()), 422, "invalid_payload", "0.kind"),
        (EVENTS, _post(b"[]"), 422, "invalid_payload", "body"),
        (
            EVENTS,
            _post(json.dumps({"source": "x", "host": "h", "kind": "k", "surprise": 1}).encode()),
            422,
            "invalid_payload",
            "surprise",
        ),
    ],
)
async def test_bad_input_is_a_json_4xx_naming_the_field(
    ingest_settings: Settings,
    amqp_url: str,
    http: aiohttp.ClientSession,
    path: str,
    request_kwargs: dict[str, Any],
    status: int,
    error: str,
    field: str | None,
) -> None:
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        async with http.post(url + path, **request_kwargs) as resp:
            assert resp.status == status, await resp.text()
            assert resp.content_type == "application/json"
            body = await resp.json()
        assert body["error"] == error
        if field is not None:
            assert field in [e["field"] for e in body["errors"]], body
        assert await tap.take(0, settle=0.2) == []


async def test_body_over_the_limit_is_413_even_when_compressed_small(
    ingest_settings: Settings, http: aiohttp.ClientSession
) -> None:
    ingest_settings = ingest_settings.model_copy(update={"ingest_max_body_bytes": 4096})
    big = json.dumps(notification(*[am_alert(f"A{i}") for i in range(40)])).encode()
    assert len(big) > 4096
    async with ingest(ingest_settings) as url:
        async with http.post(url + WEBHOOK, data=big, headers=AUTH | {"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "body_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        async with http.post(url + WEBHOOK, data=chunks(), headers=AUTH | {"Content-Type": "application/json"}) as r:
            assert r.status == 413
        zipped = gzip.compress(big)
        assert len(zipped) < 4096
        headers = AUTH | {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with http.post(url + WEBHOOK, data=zipped, headers=headers) as resp:
            assert resp.status == 413
        async with http.post(url + WEBHOOK, data=b"not gzip at all", headers=headers) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/json"


async def test_unroutable_alert_means_broken_topology_and_is_503(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    async with ingest(ingest_settings) as url:
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            await channel.queue_delete("vigil.correlator")
        async with http.post(url + WEBHOOK, json=notification(am_alert()), headers=AUTH) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            assert (await resp.json())["error"] == "broker_unavailable"


@pytest.mark.parametrize("frames", [True, False], ids=["fast-path", "aio-pika"])
async def test_either_publisher_answers_only_after_the_brokers_confirm(
    frames: bool,
    ingest_settings: Settings,
    amqp_url: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A queue that refuses every message makes the broker nack (not drop) what it routes there: a publisher that
    did not wait for confirms would answer 200 for it."""
    async with ingest(ingest_settings, frames=frames) as url, AlertTap(amqp_url) as tap:
        async with await aio_pika.connect(amqp_url) as conn:
            channel = await conn.channel()
            full = await channel.declare_queue(
                "test.full", auto_delete=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
            )
            await full.bind(ALERTS_EXCHANGE, "alerts.#")
            async with http.post(url + WEBHOOK, json=notification(am_alert("Refused")), headers=AUTH) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "broker_unavailable"
            await full.unbind(ALERTS_EXCHANGE, "alerts.#")
            async with http.post(url + WEBHOOK, json=notification(am_alert("Taken")), headers=AUTH) as resp:
                assert resp.status == 200
        messages = await tap.take(2)
    names = [n.data.alerts[0].alert.labels["alertname"] for n in notifications(messages)]
    taken = [m for m, name in zip(messages, names, strict=True) if name == "Taken"]
    assert len(taken) == 1
    assert (taken[0].content_type, taken[0].delivery_mode, taken[0].type, taken[0].app_id) == (
        "application/json",
        aio_pika.DeliveryMode.PERSISTENT,
        "alerts.received",
        "ingest",
    )
    [envelope] = notifications(taken)
    assert taken[0].message_id == str(envelope.id)
    stamped = taken[0].timestamp
    assert stamped is not None and int(stamped.timestamp()) == int(envelope.occurred_at.timestamp())
    # The fast path was the one that published, not its fallback.
    assert not [r for r in caplog.records if r.getMessage().startswith("publishing through aio-pika")]


async def test_the_fast_path_gives_way_to_aio_pika_when_its_channel_cannot_take_frames(
    ingest_settings: Settings,
    amqp_url: str,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As if aiormq's channel no longer had the bookkeeping the frames rely on (another aiormq release).
    monkeypatch.setattr(frame_publisher, "BOOKKEEPING", (*frame_publisher.BOOKKEEPING, "gone_in_a_later_aiormq"))
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        for name in ("First", "Second"):
            async with http.post(url + WEBHOOK, json=notification(am_alert(name)), headers=AUTH) as resp:
                assert resp.status == 200, await resp.text()
        messages = await tap.take(2)
    assert sorted(a.alert.labels["alertname"] for a in received(messages)) == ["First", "Second"]
    gave_way = [r for r in caplog.records if r.getMessage().startswith("publishing through aio-pika")]
    assert len(gave_way) == 1 and "gone_in_a_later_aiormq" in gave_way[0].__dict__["reason"]


async def test_wrong_method_and_unknown_path_answer_json(
    ingest_settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with ingest(ingest_settings) as url:
        async with http.get(url + WEBHOOK) as resp:
            assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
        async with http.post(url + "/api/v1/nothing", headers=AUTH) as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_metrics_count_requests_alerts_rejects_and_publish_latency(
    ingest_settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with ingest(ingest_settings) as url:
        before = await _metrics(http, url)
        async with http.post(url + WEBHOOK, json=notification(am_alert(), am_alert("X")), headers=AUTH) as resp:
            assert resp.status == 200
        async with http.post(url + WEBHOOK, json={}, headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401
        after = await _metrics(http, url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('vigil_ingest_requests_total{code="200",endpoint="alertmanager"}') == 1
    assert delta('vigil_ingest_requests_total{code="401",endpoint="alertmanager"}') == 1
    assert delta('vigil_ingest_alerts_accepted_total{sender="alertmanager",source="alertmanager"}') == 2
    assert delta('vigil_ingest_rejects_total{reason="unauthorized"}') == 1
    assert delta("vigil_ingest_publish_seconds_count") == 1


async def _metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    values = {}
    for line in text.splitlines():
        if line.startswith("vigil_ingest_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_openapi_document_describes_both_endpoints_and_resolves(
    ingest_settings: Settings, http: aiohttp.ClientSession
) -> None:
    async with ingest(ingest_settings) as url:
        async with http.get(url + "/openapi.json") as resp:
            assert resp.status == 200
            document = await resp.json()
    assert document["openapi"].startswith("3.")
    for path in (WEBHOOK, EVENTS):
        operation = document["paths"][path]["post"]
        assert {"200", "400", "401", "413", "415", "422", "503"} <= set(operation["responses"])
    webhook_schema = document["components"]["schemas"]["AlertmanagerWebhook"]
    assert {"groupKey", "alerts", "receiver", "status"} <= set(webhook_schema["required"])

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    names = set(document["components"]["schemas"])
    assert all(ref.removeprefix("#/components/schemas/") in names for ref in refs(document))


def _secret(value: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    return SecretStr(value)


# --- the examples in docs/ingest.md work as written ----------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def _doc_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(b for b in blocks if containing in b)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_documented_curl_example_is_accepted(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    command = _doc_block("sh", "/api/v1/events").split("\n# ")[0]
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        command = command.replace("http://127.0.0.1:8081", url)
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-c", command],
            env={**os.environ, "VIGIL_TOKEN": "test-sender-token-0001"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["accepted"] == 1
        [message] = await tap.take(1)
    assert message.routing_key == "alert.firing.error.backup_failed"
    assert envelopes([message])[0].data.alert.labels["job"] == "nightly-db"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_documented_fail2ban_action_reports_a_ban_and_its_end(
    ingest_settings: Settings, amqp_url: str, http: aiohttp.ClientSession
) -> None:
    parser = configparser.RawConfigParser()
    parser.read_string(_doc_block("ini", "actionban"))
    tags = dict(parser["Init"]) | {"token": "f2b-secret", "fq-hostname": "vpn1.example", "name": "sshd"}
    tags |= {"ip": "192.0.2.10", "failures": "5"}
    ingest_settings = ingest_settings.model_copy(update={"ingest_tokens": {"fail2ban": _secret("f2b-secret")}})
    async with ingest(ingest_settings) as url, AlertTap(amqp_url) as tap:
        tags["url"] = url + EVENTS
        for action in ("actionban", "actionunban"):
            # Fail2Ban replaces <tag>s and runs the line in a shell; so does this test.
            command = re.sub(r"<([\w-]+)>", lambda m: tags[m.group(1)], parser["Definition"][action].replace("%%", "%"))
            result = await asyncio.to_thread(
                subprocess.run, ["sh", "-c", command], capture_output=True, text=True, timeout=30
            )
            assert result.returncode == 0, result.stdout + result.stderr
        messages = await tap.take(2)
    ban, unban = envelopes(messages)
    assert [m.routing_key for m in messages] == ["alert.firing.warning.ban", "alert.resolved.warning.ban"]
    assert ban.data.sender == "fail2ban" and ban.data.alert.labels["ip"] == "192.0.2.10"
    assert ban.data.alert.labels["host"] == "vpn1.example"
    assert ban.data.alert.fingerprint == unban.data.alert.fingerprint
