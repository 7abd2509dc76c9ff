"""Error answers of the API: JSON naming the field at fault, one shape for every 4xx and 5xx."""

from __future__ import annotations

from aiohttp import web


def problem(status: int, message: str, *, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"error": message, "status": status}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)
