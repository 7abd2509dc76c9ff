"""The JSON bodies of refusals: every 4xx names what was wrong and, where it can, the field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

MAX_ERRORS = 20


def problem(status: int, error: str, message: str, errors: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "error": error, "message": message}
    listed = list(errors)
    if listed:
        body["errors"] = listed
    return body


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


def nul_problem(fields: list[str]) -> tuple[int, dict[str, Any]]:
    message = "must not contain the NUL character (\\u0000)"
    errors = [{"field": f, "message": message, "type": "nul_character"} for f in fields[:MAX_ERRORS]]
    return 422, problem(422, "invalid_payload", f"NUL character in {fields[0]}", errors)
