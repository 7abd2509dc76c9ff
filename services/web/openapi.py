"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from services.web.listing import MAX_LIMIT, SEVERITIES, STATES
from shared import problems


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _key() -> dict[str, Any]:
    return {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^INC-\d{6,}$"}}


# Any request: credentials, cookies or a CSRF header that are not UTF-8 or hold control characters; a query past
# VIGIL_WEB_STATEMENT_TIMEOUT_MS (`query_timeout`) or PostgreSQL unreachable (`database_unavailable`), with Retry-After.
COMMON_ERRORS = {
    "400": _error("Malformed credentials, cookie or CSRF header"),
    "503": _error("A query took too long, or the database is unreachable; retry after Retry-After"),
}
READ_ERRORS = {**COMMON_ERRORS, "401": _error("No credentials"), "404": _error("No such incident")}
ACT_ERRORS = {
    "400": COMMON_ERRORS["400"],
    "401": _error("No credentials"),
    "403": _error("Read-only credentials, or a missing CSRF token for a session"),
    "404": _error("No such incident"),
    "422": _error("Invalid body"),
    "503": _error("The broker did not confirm the command"),
}


def _action(summary: str, comment_required: bool = False) -> dict[str, Any]:
    body_schema: dict[str, Any] = {
        "type": "object",
        "properties": {"comment": {"type": "string", "maxLength": 65536}},
    }
    if comment_required:
        body_schema["required"] = ["comment"]
    return {
        "post": {
            "summary": summary,
            "description": "Sends a command to the correlator and answers once the broker confirmed it; the change "
            "appears later as an `incident.*` event and in the incident.",
            "parameters": [_key()],
            "requestBody": {"required": comment_required, "content": {"application/json": {"schema": body_schema}}},
            "responses": {
                "202": {
                    "description": "Command accepted by the broker",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandAccepted"}}},
                },
                **ACT_ERRORS,
            },
        }
    }


def _download(summary: str, types: dict[str, str], parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "The report",
                    "content": {t: {"schema": {"type": "string"}} for t in types.values()},
                },
                **READ_ERRORS,
                "422": _error("Invalid parameter"),
            },
        }
    }


def _audit(path: dict[str, Any]) -> dict[str, Any]:
    path["get"]["responses"]["503"] = _error(
        "VIGIL_WEB_MAX_AUDIT_EXPORTS exports are running (`busy`), or the audit ran past "
        "VIGIL_WEB_AUDIT_STATEMENT_TIMEOUT_MS; retry after Retry-After"
    )
    return path


def openapi_document() -> dict[str, Any]:
    incident_schema = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "title": {"type": "string"},
            "state": {"type": "string", "enum": list(STATES)},
            "severity": {"type": "string"},
            "hosts": {"type": "array", "items": {"type": "string"}},
            "rule": {"type": "string"},
            "alert_count": {"type": "integer"},
            "firing_count": {"type": "integer"},
            "flapping": {"type": "boolean"},
            "revision": {"type": "integer"},
            **{
                name: {"type": ["string", "null"], "format": "date-time"}
                for name in ("opened_at", "first_alert_at", "last_alert_at", "acknowledged_at", "resolved_at")
            },
            "acknowledged_by": {"type": ["string", "null"]},
            "resolved_by": {"type": ["string", "null"]},
        },
    }
    list_params = [
        {
            "name": "state",
            "in": "query",
            "schema": {"type": "string"},
            "description": f"Comma list of {', '.join(STATES)}",
        },
        {
            "name": "severity",
            "in": "query",
            "schema": {"type": "string"},
            "description": f"Comma list of {', '.join(SEVERITIES)}",
        },
        {"name": "host", "in": "query", "schema": {"type": "string"}},
        {"name": "alertname", "in": "query", "schema": {"type": "string"}},
        {
            "name": "matcher",
            "in": "query",
            "schema": {"type": "string"},
            "description": 'Alertmanager label matcher over the incident\'s alerts, e.g. job="node" or '
            'instance=~"web-.*"; repeat for several (one alert must match all).',
        },
        {"name": "q", "in": "query", "schema": {"type": "string"}, "description": "Text in the title or key"},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string"},
            "description": "next_cursor of the previous page",
        },
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    ]
    range_params: list[dict[str, Any]] = [
        {"name": "since", "in": "query", "required": True, "schema": {"type": "string", "format": "date-time"}},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil API", "version": "1", "description": "Incidents built from Alertmanager alerts."},
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/incidents": {
                "get": {
                    "summary": "List incidents, newest first",
                    "parameters": list_params,
                    "responses": {
                        "200": {
                            "description": "A page of incidents and the counts per state",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IncidentPage"}}},
                        },
                        **COMMON_ERRORS,
                        "401": _error("No credentials"),
                        "422": _error("Invalid query parameter (the body names it)"),
                    },
                }
            },
            "/api/v1/incidents/{key}": {
                "get": {
                    "summary": "One incident with its alerts, timeline and enrichment context",
                    "parameters": [_key()],
                    "responses": {
                        "200": {
                            "description": "The incident",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Incident"}}},
                        },
                        **READ_ERRORS,
                    },
                }
            },
            "/api/v1/incidents/{key}/report.md": _download("Markdown report", {"md": "text/markdown"}, [_key()]),
            "/api/v1/incidents/{key}/report.xlsx": _download(
                "XLSX report",
                {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
                [_key()],
            ),
            "/api/v1/incidents/{key}/report.json": _download("JSON report", {"json": "application/json"}, [_key()]),
            "/api/v1/reports/audit.md": _audit(
                _download("Audit report of a period", {"md": "text/markdown"}, range_params)
            ),
            "/api/v1/reports/audit.xlsx": _audit(
                _download(
                    "Audit report of a period",
                    {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
                    range_params,
                )
            ),
            "/api/v1/incidents/{key}/ack": _action("Acknowledge"),
            "/api/v1/incidents/{key}/resolve": _action("Resolve"),
            "/api/v1/incidents/{key}/reopen": _action("Reopen"),
            "/api/v1/incidents/{key}/comments": _action("Comment", comment_required=True),
            "/api/v1/stream": {
                "get": {
                    "summary": "Server-sent events: `incident` events with the changed incident's key, state, severity",
                    "responses": {
                        "200": {"description": "text/event-stream"},
                        "400": COMMON_ERRORS["400"],
                        "401": _error("No credentials"),
                        "503": _error("VIGIL_WEB_MAX_LIVE_CLIENTS streams are open (`busy`); retry after Retry-After"),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "VIGIL_API_TOKEN or a read-only token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "vigil_session"},
            },
            "schemas": {
                "Error": problems.schema(),
                "IncidentSummary": incident_schema,
                "IncidentPage": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/IncidentSummary"}},
                        "next_cursor": {"type": ["string", "null"]},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
                "Incident": {
                    "allOf": [
                        {"$ref": "#/components/schemas/IncidentSummary"},
                        {
                            "type": "object",
                            "properties": {
                                "group_labels": {"type": "object"},
                                "alerts": {"type": "array", "items": {"type": "object"}},
                                "timeline": {"type": "array", "items": {"type": "object"}},
                                "context": {"type": ["object", "null"]},
                            },
                        },
                    ]
                },
                "CommandAccepted": {
                    "type": "object",
                    "properties": {
                        "command_id": {"type": "string", "format": "uuid"},
                        "key": {"type": "string"},
                        "action": {"type": "string"},
                    },
                },
            },
        },
    }
