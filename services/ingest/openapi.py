"""The OpenAPI 3.1 document of ingest's two endpoints, built from the same pydantic models that validate
requests, so the document cannot drift from what is accepted."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared import problems
from shared.contracts import AlertmanagerWebhook, GenericEvent

WEBHOOK_PATH = "/api/v1/webhooks/alertmanager"
EVENTS_PATH = "/api/v1/events"


def _problem_schema() -> dict[str, Any]:
    return problems.schema(
        [
            "unauthorized",
            "unsupported_media_type",
            "body_too_large",
            "too_many_alerts",
            "invalid_json",
            "invalid_payload",
            "broker_unavailable",
            "not_found",
            "method_not_allowed",
            "bad_request",
        ]
    )


def _accepted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "accepted", "sender"],
        "properties": {
            "status": {"const": "accepted"},
            "accepted": {"type": "integer", "description": "Alerts confirmed by the broker."},
            "sender": {"type": "string", "description": "The sender the token belongs to."},
            "fingerprints": {"type": "array", "items": {"type": "string"}, "description": "Events only."},
        },
    }


def _responses(max_body_bytes: int, max_alerts: int) -> dict[str, Any]:
    def problem(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }

    return {
        "200": {
            "description": "Every alert of the request was confirmed by RabbitMQ.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "400": problem("The body is not JSON."),
        "401": problem("Missing or unknown token."),
        "413": problem(
            f"The body is larger than {max_body_bytes} bytes (VIGIL_INGEST_MAX_BODY_BYTES), or holds more than "
            f"{max_alerts} alerts (VIGIL_INGEST_MAX_ALERTS; set Alertmanager's max_alerts to at most that)."
        ),
        "415": problem("Content-Type is not application/json."),
        "422": problem("JSON of the wrong shape or types; `errors` names each field."),
        "503": {
            **problem("RabbitMQ is unreachable or did not confirm in time: retry after `Retry-After` seconds."),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    }


def openapi_document(max_body_bytes: int, max_alerts: int) -> dict[str, Any]:
    _, top = models_json_schema(
        [(AlertmanagerWebhook, "validation"), (GenericEvent, "validation")],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Problem"] = _problem_schema()
    schemas["Accepted"] = _accepted_schema()
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
    responses = _responses(max_body_bytes, max_alerts)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil ingest",
            "version": "1",
            "description": (
                "Receives Alertmanager (and Grafana) webhook notifications and generic events, and publishes "
                "each alert on the RabbitMQ topic exchange `vigil.alerts` with routing key "
                "`alert.<status>.<severity>.<alertname>`. A 2xx means every alert is stored by the broker."
            ),
        },
        "paths": {
            WEBHOOK_PATH: {
                "post": {
                    "operationId": "receiveAlertmanagerWebhook",
                    "summary": "An Alertmanager webhook_config notification (payload version 4).",
                    "description": "Grafana's Alertmanager-compatible webhook is accepted too; its extra fields "
                    "are kept on each alert.",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/AlertmanagerWebhook"}}
                        },
                    },
                    "responses": responses,
                }
            },
            EVENTS_PATH: {
                "post": {
                    "operationId": "receiveEvents",
                    "summary": "One generic event, or an array of them (Fail2Ban, log watchers, scripts).",
                    "description": "Each event becomes one alert: `kind` is its alertname; `host`, `severity` and "
                    "`source` become labels and win over labels of the same name.",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/GenericEvent"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": max_alerts,
                                            "items": {"$ref": "#/components/schemas/GenericEvent"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": responses,
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A sender's token."},
                "basic": {"type": "http", "scheme": "basic", "description": "Sender name and its token."},
            },
        },
    }
