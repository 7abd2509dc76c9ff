"""Ingest's pure rules without I/O: who a credential belongs to, how an event becomes an alert, what a
routing key looks like, and how a refusal names the field."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from services.ingest.auth import SenderTokens
from services.ingest.translate import (
    NOTIFICATION_ENVELOPE,
    event_alert,
    nul_character_fields,
    routing_key_for,
    webhook_message,
    webhook_publication,
)
from shared.config import Settings
from shared.contracts import AlertmanagerWebhook, GenericEvent, WebhookAlert
from shared.fingerprint import label_fingerprint
from shared.problems import validation_problem

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def tokens() -> SenderTokens:
    settings = Settings(
        ingest_token="t-default-0123456789",
        ingest_tokens={"grafana": SecretStr("t-grafana-0123456789"), "cron": "t-cron-0123456789ab"},
    )
    return SenderTokens.from_settings(settings)


def basic(name: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(name + b":" + password).decode()


def test_each_sender_is_recognised_by_its_own_token_only() -> None:
    senders = tokens()
    assert senders.sender("Bearer t-default-0123456789") == "alertmanager"
    assert senders.sender("bearer  t-grafana-0123456789 ") == "grafana"
    assert senders.sender(basic(b"cron", b"t-cron-0123456789ab")) == "cron"
    assert senders.sender(basic(b"grafana", b"t-cron-0123456789ab")) is None  # a token is bound to its sender's name
    assert senders.sender(basic(b"cron", b"")) is None
    for bad in (
        None,
        "",
        "Bearer",
        "Bearer t-default-012345678",
        "Bearer t-default-01234567892",
        "t-default-0123456789",
        "Basic ###",
        "Digest x",
    ):
        assert senders.sender(bad) is None, bad


def test_no_tokens_configured_matches_nothing() -> None:
    senders = SenderTokens.from_settings(Settings(ingest_token=None, ingest_tokens={}))
    assert not senders
    assert senders.sender("Bearer ") is None
    assert senders.sender(basic(b"alertmanager", b"")) is None


def alert(**labels: str) -> WebhookAlert:
    return WebhookAlert(status="firing", labels=labels, startsAt=NOW)


def test_routing_key_lets_subscribers_filter_and_stays_within_amqp_limits() -> None:
    assert routing_key_for(alert(alertname="Disk.Full*", severity="critical")) == "alert.firing.critical.Disk_Full_"
    assert routing_key_for(alert()) == "alert.firing.none._"
    long_key = routing_key_for(alert(alertname="字" * 100, severity="重" * 100))
    assert len(long_key.encode()) <= 255
    assert long_key.startswith("alert.firing." + "重" * 10)
    assert long_key.endswith("." + "字" * 20)


def test_event_becomes_an_alert_with_explicit_fields_winning_over_labels() -> None:
    event = GenericEvent(
        source="xray",
        host="edge1",
        kind="auth_failed",
        severity="error",
        labels={"user": "bob", "host": "wrong", "severity": "info", "source": "x"},
        message="3 failed logins",
        time=NOW,
    )
    converted = event_alert(event)
    labels = {"user": "bob", "host": "edge1", "severity": "error", "source": "xray", "alertname": "auth_failed"}
    assert converted.labels == labels
    assert converted.annotations == {"summary": "3 failed logins"}
    assert converted.fingerprint == label_fingerprint(labels)
    assert converted.starts_at == NOW and converted.ends_at is None
    assert event_alert(event.model_copy(update={"message": ""})).annotations == {}


def test_notification_becomes_one_publication_of_its_alerts_sharing_the_group() -> None:
    webhook = AlertmanagerWebhook.model_validate(
        {
            "receiver": "vigil",
            "status": "firing",
            "groupKey": "{}:{}",
            "groupLabels": {"job": "node"},
            "externalURL": "http://am",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A"}, "startsAt": "2026-01-01T00:00:00Z"},
                {"status": "resolved", "labels": {"alertname": "B"}, "startsAt": "2026-01-01T00:00:00Z"},
            ],
        }
    )
    publication = webhook_publication(webhook, "grafana", NOW)
    assert (publication.exchange, publication.routing_key) == ("vigil.alerts", "alerts.alertmanager")
    envelope = publication.envelope
    assert envelope.type == "alerts.received" and envelope.producer == "ingest"
    assert [(a.alert.status, a.alert.labels["alertname"]) for a in envelope.data.alerts] == [
        ("firing", "A"),
        ("resolved", "B"),
    ]
    for received in envelope.data.alerts:
        assert (received.sender, received.group_labels, received.received_at) == ("grafana", {"job": "node"}, NOW)


def test_nul_characters_are_found_by_field_path() -> None:
    webhook = AlertmanagerWebhook.model_validate(
        {
            "receiver": "v",
            "status": "firing",
            "groupKey": "k\x00",
            "alerts": [
                {"status": "firing", "labels": {"a": "x\x00"}, "startsAt": "2026-01-01T00:00:00Z", "extra": ["\x00"]}
            ],
        }
    )
    assert sorted(nul_character_fields(webhook)) == ["alerts.0.extra.0", "alerts.0.labels.a", "groupKey"]


def test_refusal_names_each_field_by_its_wire_name() -> None:
    try:
        AlertmanagerWebhook.model_validate_json(b'{"status": "burning", "receiver": 1, "alerts": [{}]}')
    except ValidationError as exc:
        status, body = validation_problem(exc)
    assert status == 422
    fields = {e["field"] for e in body["errors"]}
    assert {"status", "receiver", "groupKey", "alerts.0.labels", "alerts.0.startsAt"} <= fields
    assert "input" not in str(body["errors"])
    try:
        AlertmanagerWebhook.model_validate_json(b'{"status": ')
    except ValidationError as exc:
        status, body = validation_problem(exc)
    assert status == 400 and body["error"] == "invalid_json" and body["errors"][0]["field"] == "body"


# --- the fast encodings are the contract's bytes -------------------------------------------------

label_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
labels = st.dictionaries(label_text, label_text, max_size=5)


@st.composite
def webhooks(draw: st.DrawFn) -> AlertmanagerWebhook:
    alerts = [
        {
            "status": draw(st.sampled_from(["firing", "resolved"])),
            "labels": draw(labels),
            "annotations": draw(labels),
            "startsAt": draw(st.datetimes(timezones=st.just(UTC))).isoformat(),
            "endsAt": draw(st.sampled_from(["0001-01-01T00:00:00Z", "2030-01-01T00:00:00.5+02:00"])),
            "generatorURL": draw(label_text),
            "fingerprint": draw(label_text),
            **draw(st.dictionaries(st.sampled_from(["values", "valueString", "panelURL"]), st.none() | label_text)),
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    body = {
        "receiver": draw(label_text),
        "status": "firing",
        "groupKey": draw(label_text),
        "groupLabels": draw(labels),
        "externalURL": draw(label_text),
        "alerts": alerts,
    }
    return AlertmanagerWebhook.model_validate_json(json.dumps(body))


@settings(max_examples=200, deadline=None)
@given(webhook=webhooks(), sender=label_text)
def test_fast_message_bodies_equal_the_envelope_models(webhook: AlertmanagerWebhook, sender: str) -> None:
    message_id = uuid.uuid4()
    model = webhook_publication(webhook, sender, NOW, message_id)
    message, adjusted = webhook_message(webhook, sender, NOW, message_id)
    assert message == model.encoded()
    assert adjusted == [a.adjusted for a in model.envelope.data.alerts if a.adjusted is not None]
    decoded = NOTIFICATION_ENVELOPE.model_validate_json(message.body)
    assert {a.sender for a in decoded.data.alerts} == {sender}
    # The properties ingest's frames carry (their bytes: tests/shared/test_amqp_frames.py).
    assert (message.type, message.app_id, message.timestamp, message.mandatory) == (
        "alerts.received",
        "ingest",
        NOW,
        True,
    )
