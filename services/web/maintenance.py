"""Maintenance windows through the API: `GET/POST /api/v1/maintenance`, `DELETE /api/v1/maintenance/{id}`.

A window is configuration, not incident state, so the web writes it itself (vigil_web may insert and delete in
`maintenance_windows`, migration 0064); the correlator reads the table per batch and marks the incidents opened in
a window. Definitions are validated by the same parser as the rules file's `maintenance:` (shared.maintenance).
Windows from the rules file are not listed here: the web does not read the correlator's file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from psycopg.types.json import Jsonb

from services.web.gate import principal_of
from shared.db import Queries
from shared.maintenance import MaintenanceError, parse_window, window_definition
from shared.problems import problem_response
from shared.service import DB

log = logging.getLogger(__name__)
Q = Queries(Path(__file__).with_name("maintenance.sql"))
MAX_BODY_BYTES = 64 * 1024


def window_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        **row["definition"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat().replace("+00:00", "Z"),
    }


async def list_windows(request: web.Request) -> web.Response:
    async with request.app[DB].connection() as conn:
        rows = await (await conn.execute(Q.maintenance_list)).fetchall()
    return web.json_response({"items": [window_json(r) for r in rows]})


async def create_window(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if not principal.can_act:
        return problem_response(403, f"{principal.name} may read but not change maintenance windows")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return problem_response(413, f"the body must be at most {MAX_BODY_BYTES} bytes", field="body")
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return problem_response(422, "the body must be a JSON object", field="body")
    try:
        window = parse_window(body, "body")
    except MaintenanceError as exc:
        return problem_response(422, str(exc), field="body")
    params = {
        "name": window.name,
        # Stored in normal form: what the correlator parses back is exactly what was validated here.
        "definition": Jsonb(window_definition(window)),
        "ends_at": window.ends_at,
        "created_by": principal.name,
    }
    async with request.app[DB].connection() as conn:
        row = await (await conn.execute(Q.maintenance_create, params)).fetchone()
    if row is None:
        return problem_response(409, f"a maintenance window named {window.name!r} exists already", field="name")
    log.info("maintenance window created", extra={"window": window.name, "actor": principal.name})
    return web.json_response(window_json(row), status=201)


async def delete_window(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if not principal.can_act:
        return problem_response(403, f"{principal.name} may read but not change maintenance windows")
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        return problem_response(404, f"no maintenance window {text}", field="id")
    async with request.app[DB].connection() as conn:
        row = await (await conn.execute(Q.maintenance_delete, {"id": int(text)})).fetchone()
    if row is None:
        return problem_response(404, f"no maintenance window {text}", field="id")
    log.info("maintenance window deleted", extra={"window_id": int(text), "actor": principal.name})
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/maintenance", list_windows)
    app.router.add_post("/api/v1/maintenance", create_window)
    app.router.add_delete("/api/v1/maintenance/{id}", delete_window)
