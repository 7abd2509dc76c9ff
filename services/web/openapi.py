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


def _json_content(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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


SILENCE_ERRORS = {
    **ACT_ERRORS,
    "422": _error("Invalid body: a duration that is not more than 0 and at most 30 days (`field`: duration)"),
    "502": _error("Alertmanager refused the request or none answered (`error`: alertmanager_error)"),
    "503": _error("No Alertmanager is configured, or the broker did not confirm the command"),
}


def _silence() -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["duration"],
        "properties": {
            "duration": {
                "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "examples": ["2h", "1h30m"]}],
                "description": "Seconds, or Alertmanager's style: 2h, 1h30m, 1d; at most 30 days",
            },
            "comment": {"type": "string", "maxLength": 4096},
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "command_id": {"type": "string", "format": "uuid"},
            "key": {"type": "string"},
            "action": {"const": "silence"},
            "silence_id": {"type": "string"},
            "until": {"type": "string", "format": "date-time"},
            "matchers": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "post": {
            "summary": "Silence the incident's group in Alertmanager",
            "description": "Makes a silence in Alertmanager (VIGIL_ALERTMANAGER_API_URLS) with an equality matcher on "
            "each of the incident's group labels, createdBy the caller, then records it in the incident's timeline "
            "through the correlator. The alerts show it (`suppression`) once the correlator polled Alertmanager.",
            "parameters": [_key()],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"201": _json_content("Silence made in Alertmanager", answer), **SILENCE_ERRORS},
        }
    }


def _unsilence() -> dict[str, Any]:
    silence_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "delete": {
            "summary": "Expire a silence in Alertmanager and record it in the incident's timeline",
            "parameters": [_key(), silence_id],
            "responses": {
                "202": {
                    "description": "Silence expired; the command recording it accepted by the broker",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CommandAccepted"}}},
                },
                **SILENCE_ERRORS,
                "404": _error("No such incident, or Alertmanager has no such silence (`field`: id)"),
            },
        }
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
            "maintenance": {
                "type": ["string", "null"],
                "description": "The maintenance window it was opened in (not in the audit's MTTA/MTTR); null: real",
            },
        },
    }
    maintenance_in = {
        "type": "object",
        "description": "A time range (start and end) or a weekly recurrence (weekly), never both",
        "required": ["name", "matchers"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
            "matchers": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": 'Alertmanager matchers an alert\'s labels must all match, e.g. instance=~"db-.*"',
            },
            "start": {"type": "string", "format": "date-time", "description": "ISO 8601 with Z or an offset"},
            "end": {"type": "string", "format": "date-time"},
            "weekly": {
                "type": "object",
                "required": ["days", "start", "duration"],
                "properties": {
                    "days": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
                    },
                    "start": {
                        "type": "string",
                        "pattern": "^\\d{1,2}:\\d{2}$",
                        "description": "Wall-clock HH:MM in timezone",
                    },
                    "duration": {"type": "string", "description": "Elapsed time, e.g. 2h or 1h30m; at most 7d"},
                    "timezone": {"type": "string", "description": "IANA name, e.g. Europe/Berlin; default UTC"},
                },
            },
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
                    "summary": "One incident with its alerts, timeline, enrichment context and similar past incidents",
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
            "/api/v1/reports/audit.json": _audit(
                _download(
                    "Audit report of a period as JSON (docs/reports.md): written as it is read, the incidents last",
                    {"json": "application/json"},
                    range_params,
                )
            ),
            "/api/v1/insights": {
                "get": {
                    "summary": "Incidents per day (per week past 92 days) by severity, and MTTA/MTTR over time",
                    "description": "The period: `period` (the last 7, 30, 90 or 365 UTC days, today included; "
                    "default 30d), or `since` and `until` (at most 366 days apart). Incidents in maintenance windows "
                    "count as incidents but not in the response times (seconds; percentiles interpolated). Figures "
                    "are served again while recent (VIGIL_WEB_INSIGHTS_FRESH_S): `as_of` says when they were computed.",
                    "parameters": [
                        {"name": "period", "in": "query", "schema": {"enum": ["7d", "30d", "90d", "365d"]}},
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "The period's figures as of `as_of`: `incidents`, `incidents_by_severity`, "
                            "`funnel`, `noisiest`, `response` "
                            "(incidents, acknowledged, tta_median_s, tta_p90_s, resolved, ttr_median_s, ttr_p90_s) and "
                            "`buckets` (start, incidents, incidents_by_severity, response)",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **COMMON_ERRORS,
                        "401": _error("No credentials"),
                        "422": _error("Invalid period (the body names the parameter)"),
                    },
                }
            },
            "/api/v1/incidents/{key}/ack": _action("Acknowledge"),
            "/api/v1/incidents/{key}/resolve": _action("Resolve"),
            "/api/v1/incidents/{key}/reopen": _action("Reopen"),
            "/api/v1/incidents/{key}/comments": _action("Comment", comment_required=True),
            "/api/v1/incidents/{key}/silence": _silence(),
            "/api/v1/incidents/{key}/silence/{id}": _unsilence(),
            "/api/v1/maintenance": {
                "get": {
                    "summary": "Maintenance windows made through the API (those of the rules file are not listed)",
                    "responses": {
                        "200": _json_content(
                            "The windows, oldest first",
                            {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/MaintenanceWindow"},
                                    }
                                },
                            },
                        ),
                        **{k: v for k, v in READ_ERRORS.items() if k != "404"},
                    },
                },
                "post": {
                    "summary": "Create a maintenance window (responders): incidents opened by alerts that start in it "
                    "and match its matchers are marked `maintenance`, left out of MTTA/MTTR",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/MaintenanceWindowIn"}}
                        },
                    },
                    "responses": {
                        "201": _json_content(
                            "The window as stored", {"$ref": "#/components/schemas/MaintenanceWindow"}
                        ),
                        "400": COMMON_ERRORS["400"],
                        "401": _error("No credentials"),
                        "403": _error("Read-only credentials, or a missing CSRF token for a session"),
                        "409": _error("A window of that name exists already"),
                        "413": _error("Body larger than 64 KiB"),
                        "422": _error("Invalid window; the message names the field"),
                        "503": COMMON_ERRORS["503"],
                    },
                },
            },
            "/api/v1/maintenance/{id}": {
                "delete": {
                    "summary": "Delete a maintenance window (responders); incidents already marked keep their mark",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {
                        "204": {"description": "Deleted"},
                        "400": COMMON_ERRORS["400"],
                        "401": _error("No credentials"),
                        "403": _error("Read-only credentials, or a missing CSRF token for a session"),
                        "404": _error("No such window"),
                        "503": COMMON_ERRORS["503"],
                    },
                }
            },
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
                "MaintenanceWindowIn": maintenance_in,
                "MaintenanceWindow": {
                    "allOf": [
                        {"$ref": "#/components/schemas/MaintenanceWindowIn"},
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "created_by": {"type": "string"},
                                "created_at": {"type": "string", "format": "date-time"},
                            },
                        },
                    ]
                },
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
                                "alerts": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "suppression": {
                                                "type": ["object", "null"],
                                                "description": "What Alertmanager holds the alert back by, as last "
                                                "polled: state (silenced, inhibited), until, silences (id, "
                                                "created_by, comment, ends_at), silenced_by, inhibited_by; null: "
                                                "nothing",
                                            }
                                        },
                                    },
                                },
                                "timeline": {"type": "array", "items": {"type": "object"}},
                                "context": {"type": ["object", "null"]},
                                "similar": {
                                    "type": "array",
                                    "maxItems": 5,
                                    "description": "Up to five earlier incidents with the closest signatures (rule, "
                                    "group labels, alert names, templates of the error-burst log lines), closest "
                                    "first; ties: the more recent first",
                                    "items": {"$ref": "#/components/schemas/SimilarIncident"},
                                },
                            },
                        },
                    ]
                },
                "SimilarIncident": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "title": {"type": "string"},
                        "state": {"type": "string", "enum": ["open", "acknowledged", "resolved"]},
                        "severity": {"type": "string"},
                        "rule": {"type": "string"},
                        "opened_at": {"type": "string", "format": "date-time"},
                        "duration_seconds": {
                            "type": ["number", "null"],
                            "description": "Opened to resolved; null while it is not resolved",
                        },
                        "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
                        "acknowledged_by": {"type": ["string", "null"]},
                        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
                        "resolved_by": {"type": ["string", "null"]},
                        "maintenance": {"type": ["string", "null"]},
                        "similarity": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "Weighted Jaccard index of the two signatures: 1 is the same signature",
                        },
                        "last_comment": {
                            "type": ["object", "null"],
                            "properties": {
                                "at": {"type": "string", "format": "date-time"},
                                "actor": {"type": ["string", "null"]},
                                "text": {"type": "string"},
                            },
                        },
                        "url": {"type": "string", "description": "Its page on the dashboard: /incidents/{key}"},
                    },
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
