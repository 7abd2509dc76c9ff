"""Ingest's own refusal: a NUL character, which PostgreSQL cannot store (the shape is shared.problems')."""

from __future__ import annotations

from typing import Any

from shared.problems import MAX_ERRORS, problem


def nul_problem(fields: list[str]) -> tuple[int, dict[str, Any]]:
    message = "must not contain the NUL character (\\u0000)"
    errors = [{"field": f, "message": message, "type": "nul_character"} for f in fields[:MAX_ERRORS]]
    return 422, problem(422, "invalid_payload", f"NUL character in {fields[0]}", errors)
