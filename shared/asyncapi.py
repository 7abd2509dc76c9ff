"""The AsyncAPI 3.0 description of Vigil's messages, generated from the pydantic contracts.

Served by the correlator at /asyncapi.json and committed as docs/asyncapi.json (a test keeps the two equal:
regenerate with `python -m shared.asyncapi > docs/asyncapi.json`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contracts import (
    ALERTS_EXCHANGE,
    COMMANDS_EXCHANGE,
    INCIDENTS_EXCHANGE,
    AlertReceived,
    AlertsReceived,
    CommandAction,
    Envelope,
    IncidentCommand,
    IncidentEvent,
    IncidentEventType,
    MessageType,
    ReportReady,
    command_type,
)

VERSIONING = (
    "Every message is an envelope {id, type, version, occurred_at, producer, data}; `type` says which payload "
    "`data` holds. Adding an optional field keeps `version`; renaming, removing or changing the meaning of a "
    "field bumps it, and producers publish both versions for a deprecation period. Subscribers must ignore "
    "fields they do not know. Delivery is at-least-once: deduplicate by envelope `id`, and for incident events "
    "keep the snapshot with the highest `incident.revision` (events of one incident may arrive out of order)."
)

INCIDENT_EVENT_HELP: dict[IncidentEventType, str] = {
    IncidentEventType.opened: "A new incident reached its rule's min_alerts and is announced.",
    IncidentEventType.updated: (
        "An incident changed; `change` says how: alerts_added (it gained or refired alerts), alert_resolved, "
        "alert_stale, severity_changed, flapping_started, flapping_stopped, comment."
    ),
    IncidentEventType.acknowledged: "Someone acknowledged the incident (`actor`).",
    IncidentEventType.resolved: (
        "The incident is resolved: by a person (`actor`), or by the correlator once all its alerts resolved "
        "(detail.reason all_alerts_resolved) or when a new incident replaced a quiet one (window_expired)."
    ),
    IncidentEventType.reopened: "A resolved incident fired again within its reopen window, or a person reopened it.",
    IncidentEventType.enriched: "The enricher stored metrics and logs context for the incident.",
}

SEVERITIES = ["critical", "error", "warning", "info", "none"]


def _name(event: str) -> str:
    return event.replace(".", "_")


def asyncapi_document() -> dict[str, Any]:
    """The whole document as plain JSON data, deterministic (same contracts → same bytes)."""
    envelopes: dict[str, type[BaseModel]] = {
        "AlertReceivedEnvelope": Envelope[AlertReceived],
        "AlertsReceivedEnvelope": Envelope[AlertsReceived],
        "IncidentEventEnvelope": Envelope[IncidentEvent],
        "ReportReadyEnvelope": Envelope[ReportReady],
        "IncidentCommandEnvelope": Envelope[IncidentCommand],
    }
    key_map, defs = models_json_schema(
        [(model, "serialization") for model in envelopes.values()], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    refs = {label: key_map[(model, "serialization")]["$ref"] for label, model in envelopes.items()}

    messages: dict[str, Any] = {}

    def message(name: str, type_: str, routing_key: str, summary: str, envelope: str) -> dict[str, str]:
        messages[name] = {
            "name": type_,
            "title": type_,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": refs[envelope]},
            "x-routing-key": routing_key,
            "bindings": {"amqp": {"messageType": type_, "bindingVersion": "0.3.0"}},
        }
        return {"$ref": f"#/components/messages/{name}"}

    alert_msgs = {
        "alert_received": message(
            "alert_received",
            MessageType.alert_received,
            "alert.<status>.<severity>.<alertname>",
            "One generic event as an alert, as ingest accepted it.",
            "AlertReceivedEnvelope",
        ),
        "alerts_received": message(
            "alerts_received",
            MessageType.alerts_received,
            "alerts.<source>",
            "The alerts of one Alertmanager notification, as ingest accepted them: one message per notification.",
            "AlertsReceivedEnvelope",
        ),
    }
    incident_msgs = {
        _name(ev.value): message(
            _name(ev.value), ev.value, f"{ev.value}.<severity>", INCIDENT_EVENT_HELP[ev], "IncidentEventEnvelope"
        )
        for ev in IncidentEventType
    }
    incident_msgs["report_ready"] = message(
        "report_ready",
        MessageType.report_ready,
        "report.ready.<severity>",
        "A new version of an incident's reports is stored.",
        "ReportReadyEnvelope",
    )
    command_msgs = {
        f"command_{a.value}": message(
            f"command_{a.value}",
            command_type(a.value),
            command_type(a.value),
            f"Ask the correlator to {a.value} an incident (the correlator is the only writer of incidents).",
            "IncidentCommandEnvelope",
        )
        for a in CommandAction
    }

    def channel(exchange: str, description: str, msgs: dict[str, Any]) -> dict[str, Any]:
        return {
            "address": exchange,
            "description": description,
            "messages": msgs,
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": exchange, "type": "topic", "durable": True, "autoDelete": False},
                    "bindingVersion": "0.3.0",
                }
            },
        }

    channels = {
        "alerts": channel(
            ALERTS_EXCHANGE,
            "Alerts accepted by ingest: a notification's alerts as one message (alerts.<source>), a generic event "
            "as one alert (alert.<status>.<severity>.<alertname>).",
            alert_msgs,
        ),
        "incidents": channel(
            INCIDENTS_EXCHANGE,
            "Incident lifecycle events and report notices. Routing keys: incident.<event>.<severity> "
            f"(severity one of {', '.join(SEVERITIES)}, or another word the alert's label used) and "
            "report.ready.<severity>. Bind e.g. `incident.opened.#`, `incident.*.critical`, `#`.",
            incident_msgs,
        ),
        "commands": channel(
            COMMANDS_EXCHANGE, "Commands to the correlator; routing key command.<action>.", command_msgs
        ),
    }

    def ops(channel_name: str, msgs: dict[str, Any], action: str, summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_name}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel_name}/messages/{name}"} for name in msgs],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vigil messages",
            "version": "1",
            "description": (
                "Alerts, incidents and commands exchanged over RabbitMQ (topic exchanges, persistent JSON "
                "messages). Subscribers declare their own queue and bind it to vigil.incidents with the routing "
                "keys they want; see docs/subscribers.md.\n\nVersioning: " + VERSIONING
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The deployment's RabbitMQ (VIGIL_AMQP_URL).",
            }
        },
        "channels": channels,
        "operations": {
            "receiveIncidentEvents": ops("incidents", incident_msgs, "receive", "Subscribe to incident events."),
            "receiveAlerts": ops("alerts", alert_msgs, "receive", "What the correlator consumes from ingest."),
            "sendCommands": ops("commands", command_msgs, "send", "What the web sends to the correlator."),
        },
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
