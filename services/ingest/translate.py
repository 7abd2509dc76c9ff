"""Pure translation of what senders post into the messages ingest publishes on `vigil.alerts`.

One webhook notification becomes one `alert.received` envelope per alert; one generic event becomes one
alert of its own. Nothing here does I/O, so every rule is unit-tested on plain data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json

from shared.alert_limits import (
    DEFAULT_LIMITS,
    AlertLimits,
    BoundedNotification,
    bound_notification,
    bound_webhook_alert,
    plainly_within,
)
from shared.contracts import (
    ALERTS_EXCHANGE,
    AlertAdjustments,
    AlertmanagerWebhook,
    AlertReceived,
    AlertSource,
    Envelope,
    GenericEvent,
    MessageType,
    WebhookAlert,
    alert_routing_key,
)
from shared.fingerprint import label_fingerprint

MESSAGE_TYPE = MessageType.alert_received
PRODUCER = "ingest"
# AMQP routing keys are short strings: at most 255 bytes on the wire, whatever the characters.


ALERT_ENVELOPE = Envelope[AlertReceived]


@dataclass(frozen=True)
class Publication:
    """A message as models: what the contract says ingest publishes."""

    exchange: str
    routing_key: str
    envelope: Envelope[AlertReceived]

    def encoded(self) -> OutgoingMessage:
        envelope = self.envelope
        body = envelope.model_dump_json(by_alias=True).encode()
        return OutgoingMessage(self.exchange, self.routing_key, str(envelope.id), envelope.occurred_at, body)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message as bytes, ready for the wire."""

    exchange: str
    routing_key: str
    message_id: str
    occurred_at: datetime
    body: bytes


def routing_key_for(alert: WebhookAlert) -> str:
    return _routing_key(alert.status.value, alert.labels.get("severity"), alert.labels.get("alertname"))


# Alert names and severities repeat endlessly; bounded, so hostile variety only costs cache misses.
@lru_cache(maxsize=4096)
def _routing_key(status: str, severity: str | None, alertname: str | None) -> str:
    return alert_routing_key(status, severity, alertname)


def bounded(
    alert: WebhookAlert, received_at: datetime, limits: AlertLimits, earlier: AlertAdjustments | None = None
) -> tuple[WebhookAlert, AlertAdjustments | None]:
    """The alert within `limits` (the same object when nothing changed), and what was changed."""
    if earlier is None and plainly_within(alert, received_at, limits):
        return alert, None
    result = bound_webhook_alert(alert, received_at, limits, earlier)
    if result.adjustments is None and result.fingerprint == alert.fingerprint:
        return alert, None
    update = {
        "labels": result.labels,
        "annotations": result.annotations,
        "fingerprint": result.fingerprint,
        "starts_at": result.starts_at,
        "ends_at": result.ends_at,
        "generator_url": result.generator_url,
    }
    return alert.model_copy(update=update), result.adjustments


def _notification(webhook: AlertmanagerWebhook, limits: AlertLimits) -> BoundedNotification:
    return bound_notification(
        receiver=webhook.receiver,
        group_key=webhook.group_key,
        group_labels=webhook.group_labels,
        external_url=webhook.external_url,
        limits=limits,
    )


def webhook_publications(
    webhook: AlertmanagerWebhook,
    sender: str,
    received_at: datetime,
    ids: list[uuid.UUID] | None = None,
    limits: AlertLimits = DEFAULT_LIMITS,
) -> list[Publication]:
    """One publication per alert of the notification, each carrying the group it came in, within `limits`.

    The definition of what ingest publishes; `webhook_messages` is the same, encoded faster.
    """
    ids = ids or new_ids(len(webhook.alerts))
    shared = _notification(webhook, limits)
    publications = []
    for sent, message_id in zip(webhook.alerts, ids, strict=True):
        alert, adjusted = bounded(sent, received_at, limits, shared.earlier())
        data = AlertReceived(
            alert=alert,
            source=AlertSource.alertmanager,
            sender=sender,
            receiver=shared.receiver,
            group_key=shared.group_key,
            group_labels=shared.group_labels,
            external_url=shared.external_url,
            received_at=received_at,
            adjusted=adjusted,
        )
        envelope = ALERT_ENVELOPE(
            id=message_id, type=MESSAGE_TYPE, producer=PRODUCER, occurred_at=received_at, data=data
        )
        publications.append(Publication(ALERTS_EXCHANGE, routing_key_for(alert), envelope))
    return publications


def webhook_messages(
    webhook: AlertmanagerWebhook,
    sender: str,
    received_at: datetime,
    ids: list[uuid.UUID] | None = None,
    limits: AlertLimits = DEFAULT_LIMITS,
) -> list[OutgoingMessage]:
    """`webhook_publications`, encoded: byte for byte what `model_dump_json` gives for each envelope.

    The parts every alert of a notification shares are serialised once, and each alert once, instead of
    building and dumping two models per alert; a test holds the two paths to the same bytes.
    """
    ids = ids or new_ids(len(webhook.alerts))
    shared = _notification(webhook, limits)
    stamp = to_json(received_at)
    head = b'","type":"' + MESSAGE_TYPE.encode() + b'","version":1,"occurred_at":' + stamp
    head += b',"producer":"' + PRODUCER.encode() + b'","data":{"alert":'
    tail = b"".join(
        (
            b',"source":"alertmanager","sender":',
            to_json(sender),
            b',"receiver":',
            to_json(shared.receiver),
            b',"group_key":',
            to_json(shared.group_key),
            b',"group_labels":',
            to_json(shared.group_labels),
            b',"external_url":',
            to_json(shared.external_url),
            b',"received_at":',
            stamp,
            b',"adjusted":',
        )
    )
    dump = WebhookAlert.__pydantic_serializer__.to_json
    dump_adjusted = AlertAdjustments.__pydantic_serializer__.to_json
    messages = []
    for sent, message_id in zip(webhook.alerts, ids, strict=True):
        alert, adjusted = bounded(sent, received_at, limits, shared.earlier())
        text_id = str(message_id)
        changes = b"null}}" if adjusted is None else dump_adjusted(adjusted, by_alias=True) + b"}}"
        body = b'{"id":"' + text_id.encode() + head + dump(alert, by_alias=True) + tail + changes
        messages.append(OutgoingMessage(ALERTS_EXCHANGE, routing_key_for(alert), text_id, received_at, body))
    return messages


def new_ids(count: int) -> list[uuid.UUID]:
    """Random (version 4) ids from one read of the system's randomness instead of one per message."""
    pool = os.urandom(16 * count)
    return [uuid.UUID(bytes=pool[i * 16 : i * 16 + 16], version=4) for i in range(count)]


def event_alert(event: GenericEvent) -> WebhookAlert:
    """A generic event as an alert: its kind is the alertname, explicit fields win over same-named labels."""
    labels = {
        **event.labels,
        "alertname": event.kind,
        "host": event.host,
        "severity": event.severity.value,
        "source": event.source,
    }
    annotations = {"summary": event.message} if event.message else {}
    return WebhookAlert(
        status=event.status,
        labels=labels,
        annotations=annotations,
        starts_at=event.time,
        ends_at=event.ends_at,
        fingerprint=label_fingerprint(labels),
    )


def event_publication(
    event: GenericEvent, sender: str, received_at: datetime, limits: AlertLimits = DEFAULT_LIMITS
) -> Publication:
    alert, adjusted = bounded(event_alert(event), received_at, limits)
    data = AlertReceived(
        alert=alert, source=AlertSource.event, sender=sender, received_at=received_at, adjusted=adjusted
    )
    envelope = ALERT_ENVELOPE(type=MESSAGE_TYPE, producer=PRODUCER, occurred_at=received_at, data=data)
    return Publication(ALERTS_EXCHANGE, routing_key_for(alert), envelope)


def nul_character_fields(value: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of strings (keys or values) holding U+0000, which PostgreSQL's text and jsonb refuse.

    Rejected at the door: accepted, such an alert would fail in the correlator after the sender was told
    it was safe.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        for name, field in fields.items():
            yield from nul_character_fields(getattr(value, name), _join(path, field.alias or name))
        for name, extra in (value.model_extra or {}).items():
            yield from nul_character_fields(extra, _join(path, name))
    elif isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            if "\x00" in key_text:
                yield _join(path, key_text.replace("\x00", "\\u0000"))
            yield from nul_character_fields(item, _join(path, key_text))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from nul_character_fields(item, _join(path, str(index)))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
