"""Pure translation of what senders post into the messages ingest publishes on `vigil.alerts`.

One webhook notification becomes one `alerts.received` envelope holding its alerts (or shares one with
notifications that arrived while the broker confirmed an earlier one); one generic event becomes one `alert.received`
of its own. Nothing here does I/O, so every rule is unit-tested on plain data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

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
    AlertsReceived,
    Envelope,
    GenericEvent,
    MessageType,
    WebhookAlert,
    alert_routing_key,
    alerts_routing_key,
)
from shared.fingerprint import label_fingerprint
from shared.messaging import JsonMessage

MESSAGE_TYPE = MessageType.alert_received
NOTIFICATION_TYPE = MessageType.alerts_received
PRODUCER = "ingest"
# AMQP routing keys are short strings: at most 255 bytes on the wire, whatever the characters.


ALERT_ENVELOPE = Envelope[AlertReceived]
NOTIFICATION_ENVELOPE = Envelope[AlertsReceived]
NOTIFICATION_ROUTING_KEY = alerts_routing_key(AlertSource.alertmanager)


Payload = TypeVar("Payload", AlertReceived, AlertsReceived)


@dataclass(frozen=True)
class Publication(Generic[Payload]):
    """A message as models: what the contract says ingest publishes."""

    exchange: str
    routing_key: str
    envelope: Envelope[Payload]

    def encoded(self) -> JsonMessage:
        envelope = self.envelope
        body = envelope.model_dump_json(by_alias=True).encode()
        return alert_message(
            self.exchange, self.routing_key, str(envelope.id), envelope.occurred_at, body, message_type=envelope.type
        )


def alert_message(
    exchange: str,
    routing_key: str,
    message_id: str,
    occurred_at: datetime,
    body: bytes,
    *,
    message_type: str = MESSAGE_TYPE,
) -> JsonMessage:
    """Alerts as bytes, ready for the wire: stamped with when ingest received them, mandatory (an alert nobody
    would store must fail the request)."""
    return JsonMessage(exchange, routing_key, message_id, body, message_type, PRODUCER, occurred_at)


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


def webhook_publication(
    webhook: AlertmanagerWebhook,
    sender: str,
    received_at: datetime,
    message_id: uuid.UUID | None = None,
    limits: AlertLimits = DEFAULT_LIMITS,
) -> Publication[AlertsReceived]:
    """The notification as one publication: each of its alerts within `limits`, carrying the group it came in.

    The definition of what ingest publishes; `webhook_message` is the same, encoded faster.
    """
    shared = _notification(webhook, limits)
    received = []
    for sent in webhook.alerts:
        alert, adjusted = bounded(sent, received_at, limits, shared.earlier())
        received.append(
            AlertReceived(
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
        )
    envelope = NOTIFICATION_ENVELOPE(
        id=message_id or uuid.uuid4(),
        type=NOTIFICATION_TYPE,
        producer=PRODUCER,
        occurred_at=received_at,
        data=AlertsReceived(alerts=received),
    )
    return Publication(ALERTS_EXCHANGE, NOTIFICATION_ROUTING_KEY, envelope)


def webhook_message(
    webhook: AlertmanagerWebhook,
    sender: str,
    received_at: datetime,
    message_id: uuid.UUID | None = None,
    limits: AlertLimits = DEFAULT_LIMITS,
) -> tuple[JsonMessage, list[AlertAdjustments]]:
    """`webhook_publication`, encoded: byte for byte what `model_dump_json` gives for its envelope; and what was
    adjusted of its alerts to keep them within `limits`."""
    items, adjustments = webhook_items(webhook, sender, received_at, limits)
    return notification_message(items, received_at, message_id), adjustments


def webhook_items(
    webhook: AlertmanagerWebhook, sender: str, received_at: datetime, limits: AlertLimits = DEFAULT_LIMITS
) -> tuple[list[bytes], list[AlertAdjustments]]:
    """The notification's alerts as the encoded items of an `alerts.received` (each an `AlertReceived`, complete in
    itself), and what was adjusted of them to keep them within `limits`.

    The parts every alert of a notification shares are serialised once, and each alert once, instead of
    building and dumping two models per alert; a test holds the two paths to the same bytes.
    """
    shared = _notification(webhook, limits)
    stamp = to_json(received_at)
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
    items = []
    adjustments = []
    for sent in webhook.alerts:
        alert, adjusted = bounded(sent, received_at, limits, shared.earlier())
        if adjusted is None:
            changes = b"null}"
        else:
            changes = dump_adjusted(adjusted, by_alias=True) + b"}"
            adjustments.append(adjusted)
        items.append(b'{"alert":' + dump(alert, by_alias=True) + tail + changes)
    return items, adjustments


def notification_message(
    items: Sequence[bytes], occurred_at: datetime, message_id: uuid.UUID | None = None
) -> JsonMessage:
    """One `alerts.received` envelope of encoded items (`webhook_items`): of one notification, or of several that
    ingest merged while the broker was confirming an earlier message (services/ingest/coalesce.py)."""
    text_id = str(message_id or uuid.uuid4())
    body = b"".join(
        (
            b'{"id":"',
            text_id.encode(),
            b'","type":"',
            NOTIFICATION_TYPE.encode(),
            b'","version":1,"occurred_at":',
            to_json(occurred_at),
            b',"producer":"',
            PRODUCER.encode(),
            b'","data":{"alerts":[',
            b",".join(items),
            b"]}}",
        )
    )
    return alert_message(
        ALERTS_EXCHANGE, NOTIFICATION_ROUTING_KEY, text_id, occurred_at, body, message_type=NOTIFICATION_TYPE
    )


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
) -> Publication[AlertReceived]:
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
