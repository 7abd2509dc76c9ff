"""Error answers of every Vigil HTTP API: one JSON shape for every 4xx and 5xx, naming the field at fault.

    {"status": 422, "error": "invalid_payload", "message": "...", "field": "alerts.0.startsAt",
     "errors": [{"field": "alerts.0.startsAt", "message": "...", "type": "datetime_parsing"}]}

`error` is a stable code for programs, `message` is for people, `field` is the first field at fault (absent
when no field is), `errors` lists every field at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

MAX_ERRORS = 20

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


def problem(status: int, error: str, message: str, errors: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "error": error, "message": message}
    listed = list(errors)
    if listed:
        body["field"] = listed[0]["field"]
        body["errors"] = listed
    return body


def problem_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    errors = [{"field": field, "message": message}] if field is not None else []
    body = problem(status, error or ERROR_CODES.get(status, "error"), message, errors)
    return web.json_response(body, status=status, headers=headers)


def field_name(loc: tuple[int | str, ...]) -> str:
    """`alerts.0.labels.severity`; `body` for the document as a whole."""
    return ".".join(str(part) for part in loc) or "body"


def validation_problem(exc: ValidationError) -> tuple[int, dict[str, Any]]:
    """400 for a body that is not JSON at all, 422 for JSON of the wrong shape or types.

    The input values are left out of the answer: they can be large, and a client's own data is no news to it.
    """
    details = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(d["type"] == "json_invalid" for d in details):
        message = next(d["msg"] for d in details if d["type"] == "json_invalid")
        return 400, problem(400, "invalid_json", message, [{"field": "body", "message": message}])
    errors = [{"field": field_name(d["loc"]), "message": d["msg"], "type": d["type"]} for d in details[:MAX_ERRORS]]
    summary = f"{len(details)} invalid field(s), first: {errors[0]['field']}: {errors[0]['message']}"
    return 422, problem(422, "invalid_payload", summary, errors)


def schema(codes: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAPI schema of the shape above; `codes` lists the `error` values an API can answer."""
    error: dict[str, Any] = {"type": "string"}
    if codes:
        error["enum"] = sorted(set(codes))
    return {
        "type": "object",
        "required": ["status", "error", "message"],
        "properties": {
            "status": {"type": "integer"},
            "error": error,
            "message": {"type": "string"},
            "field": {"type": "string", "description": "The first field at fault, e.g. alerts.0.startsAt."},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        "field": {"type": "string", "description": "Dotted path, e.g. alerts.0.startsAt."},
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
    }
