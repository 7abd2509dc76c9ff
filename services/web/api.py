"""The JSON API (`/api/v1/...`, described by `/api/v1/openapi.json`) and the live event stream."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from aiohttp import web
from prometheus_client import Counter

from services.web import commands, downloads, maintenance, store
from services.web.appkeys import LIVE
from services.web.listing import QueryError, encode_cursor, parse_list_query, parse_time, unknown_params
from services.web.live import LiveFull, sse_frame
from services.web.openapi import openapi_document
from services.web.presentation import (
    alert_json,
    incident_summary_json,
    parse_context,
    similar_json,
    timeline_json,
)
from shared.contracts import CommandAction
from shared.jsonlog import incident_key
from shared.problems import problem_response
from shared.service import DB, SETTINGS

log = logging.getLogger(__name__)
MAX_AUDIT_DAYS = 400
# How long a client refused for being one too many is asked to wait.
AUDIT_RETRY_AFTER_S = 10
AUDIT_FORMATS: dict[str, downloads.AuditFormat] = {"md": "md", "xlsx": "xlsx", "json": "json"}
LIVE_RETRY_AFTER_S = 30
# The live stream looks this often whether its client is still there, and comments this often when there is no news.
LIVE_POLL_S = 1.0
LIVE_KEEPALIVE_S = 15.0
AUDIT_EXPORTS_REFUSED = Counter(
    "vigil_web_audit_exports_refused_total", "Audit exports refused because VIGIL_WEB_MAX_AUDIT_EXPORTS were running"
)
ACTION_PATHS = {"ack": CommandAction.acknowledge, "resolve": CommandAction.resolve, "reopen": CommandAction.reopen}


def query_params(request: web.Request) -> dict[str, list[str]]:
    return {name: request.query.getall(name) for name in request.query}


def filename(key: str, fmt: str) -> str:
    return f"{key}.{fmt}"


def dumps(document: Any) -> str:
    # orjson: an incident of 10,000 alerts is 7 MB of JSON, and the json module took a sixth of its answer time.
    return orjson.dumps(document, default=str).decode()


async def list_incidents(request: web.Request) -> web.Response:
    params = query_params(request)
    unknown = unknown_params(params)
    if unknown:
        return problem_response(422, f"unknown query parameter {unknown[0]!r}", field=unknown[0])
    try:
        f = parse_list_query(params)
        page = await store.list_incidents(request.app[DB], f)
    except QueryError as exc:
        return problem_response(422, exc.message, field=exc.field)
    return web.json_response(
        {
            "items": [incident_summary_json(row) for row in page.items],
            "next_cursor": encode_cursor(page.next_cursor) if page.next_cursor else None,
            "counts": page.counts,
            "counts_capped": sorted(page.capped),
        },
        dumps=dumps,
    )


async def get_incident(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    detail = await store.incident_detail(request.app[DB], key) if store.KEY_PATTERN.match(key) else None
    if detail is None:
        return problem_response(404, f"no incident {key}", field="key")
    whole = detail.whole
    context = parse_context(whole.enrichment)
    body: dict[str, Any] = incident_summary_json(whole.incident.model_dump())
    body["group_labels"] = whole.incident.group_labels
    body["alerts"] = [alert_json(a) for a in whole.alerts]
    body["timeline"] = [timeline_json(t) for t in whole.timeline]
    body["context"] = context.model_dump(mode="json") if context else None
    body["similar"] = [similar_json(s) for s in detail.similar]
    return web.json_response(body, dumps=dumps)


async def incident_report(request: web.Request) -> web.Response:
    key, fmt = request.match_info["key"], request.match_info["fmt"]
    incident = await store.incident(request.app[DB], key) if store.KEY_PATTERN.match(key) else None
    if incident is None:
        return problem_response(404, f"no incident {key}", field="key")
    token = incident_key.set(key)
    try:
        found = await downloads.incident_file(
            request.app[DB],
            key,
            fmt,
            alertmanager_url=request.app[SETTINGS].alertmanager_url,
            xlsx_cache=request.app[downloads.XLSX_CACHE],
        )
    finally:
        incident_key.reset(token)
    if found is None:
        return problem_response(404, f"no incident {key}", field="key")
    content, origin = found
    return web.Response(
        body=content,
        headers={
            "Content-Type": downloads.CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{filename(key, fmt)}"',
            "X-Vigil-Report": origin,
        },
    )


def audit_range(request: web.Request) -> tuple[datetime, datetime]:
    unknown = sorted(set(request.query) - {"since", "until"})
    if unknown:
        raise QueryError(unknown[0], "unknown query parameter")
    since_text, until_text = request.query.get("since", "").strip(), request.query.get("until", "").strip()
    if not since_text:
        raise QueryError("since", "required, an ISO 8601 time")
    since = parse_time("since", since_text)
    until = parse_time("until", until_text) if until_text else datetime.now(UTC)
    if until <= since:
        raise QueryError("until", "must be after since")
    if until - since > timedelta(days=MAX_AUDIT_DAYS):
        raise QueryError("until", f"the range may span at most {MAX_AUDIT_DAYS} days")
    return since, until


async def audit_report(request: web.Request) -> web.StreamResponse:
    fmt = AUDIT_FORMATS[request.match_info["fmt"]]
    try:
        since, until = audit_range(request)
    except QueryError as exc:
        return problem_response(422, exc.message, field=exc.field)
    exports = request.app[downloads.AUDIT_EXPORTS]
    name = f"audit-{since:%Y%m%d}-{until:%Y%m%d}.{fmt}"
    headers = {"Content-Type": downloads.CONTENT_TYPES[fmt], "Content-Disposition": f'attachment; filename="{name}"'}
    try:
        with exports.slot():
            with await exports.build(since, until, fmt) as file:
                return await downloads.stream_file(request, file, headers)
    except downloads.ExportsBusy:
        AUDIT_EXPORTS_REFUSED.inc()
        return problem_response(
            503,
            f"{exports.limit} audit exports are being built, the most at once; try again shortly",
            error="busy",
            headers={"Retry-After": str(AUDIT_RETRY_AFTER_S)},
        )
    except psycopg.errors.QueryCanceled:
        timeout_s = exports.statement_timeout_ms / 1000
        log.warning("audit export timed out", extra={"since": since.isoformat(), "until": until.isoformat()})
        return problem_response(
            503,
            f"the audit's queries took longer than {timeout_s:g} s; try a shorter period",
            error="query_timeout",
        )


async def json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise commands.CommandRejected(problem_response(422, "the body must be a JSON object", field="body")) from None
    if not isinstance(body, dict):
        raise commands.CommandRejected(problem_response(422, "the body must be a JSON object", field="body"))
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise commands.CommandRejected(problem_response(422, "must be a string", field="comment"))
    return body


async def incident_action(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    action = ACTION_PATHS[request.match_info["action"]]
    try:
        body = await json_body(request)
        command_id = await commands.send_command(request, key, action, body.get("comment", ""))
    except commands.CommandRejected as rejected:
        return rejected.response
    return web.json_response({"command_id": str(command_id), "key": key, "action": action.value}, status=202)


async def add_comment(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    try:
        body = await json_body(request)
        command_id = await commands.send_command(request, key, CommandAction.comment, body.get("comment", ""))
    except commands.CommandRejected as rejected:
        return rejected.response
    return web.json_response({"command_id": str(command_id), "key": key, "action": "comment"}, status=202)


def gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one `incident` event per incident change, a comment line every 15 s to keep proxies open.

    At most VIGIL_WEB_MAX_LIVE_CLIENTS at once: the next is answered 503 with Retry-After. A client that goes away
    frees its place within a second: aiohttp does not cancel a handler whose client left, so the loop looks."""
    hub = request.app[LIVE]
    try:
        async with hub.subscribe() as queue:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )
            await response.prepare(request)
            await response.write(b"retry: 3000\n: connected\n\n")
            quiet_s = 0.0
            while not gone(request):
                try:
                    payload = await asyncio.wait_for(queue.get(), LIVE_POLL_S)
                except TimeoutError:
                    quiet_s += LIVE_POLL_S
                    if quiet_s >= LIVE_KEEPALIVE_S:
                        await response.write(b": keep-alive\n\n")
                        quiet_s = 0.0
                    continue
                if payload is None:
                    break
                await response.write(sse_frame(payload, hub.sequence))
                quiet_s = 0.0
            return response
    except LiveFull:
        log.warning("live client refused: too many", extra={"max_live_clients": hub.max_clients})
        return problem_response(
            503,
            f"{hub.max_clients} live clients are connected, the most at once; try again later",
            error="busy",
            headers={"Retry-After": str(LIVE_RETRY_AFTER_S)},
        )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{key}", get_incident)
    app.router.add_get("/api/v1/incidents/{key}/report.{fmt:md|xlsx|json}", incident_report)
    app.router.add_get("/api/v1/reports/audit.{fmt:md|xlsx|json}", audit_report)
    app.router.add_post("/api/v1/incidents/{key}/{action:ack|resolve|reopen}", incident_action)
    app.router.add_post("/api/v1/incidents/{key}/comments", add_comment)
    app.router.add_get("/api/v1/stream", stream)
    maintenance.add_routes(app)
    app.router.add_get("/events", stream)
