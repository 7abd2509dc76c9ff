"""The web's PostgreSQL: which role it connects as, its pool (each statement bounded by VIGIL_WEB_STATEMENT_TIMEOUT_MS),
the audit exports' own connections, and the answer to a query that cannot be answered in time.

With VIGIL_WEB_DATABASE_URL the web logs in as a member of `vigil_web` (migration 0060: reads incidents, writes only its
sessions and login attempts) and never uses the schema owner's VIGIL_DATABASE_URL: it waits for the migrations the
other services apply at their start. Without it, it connects as the owner and migrates like every other service.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
from aiohttp import web
from prometheus_client import Counter
from psycopg_pool import PoolTimeout

from services.web.downloads import AUDIT_EXPORTS, RESPONSE_TARGETS, AuditExports
from services.web.gate import is_api
from services.web.pages import render
from shared.db import migrate, open_pool, user_of, wait_for_schema
from shared.problems import problem_response
from shared.service import DB, READY_CHECKS, SETTINGS

log = logging.getLogger(__name__)
# How long a web connected as its own role waits for the schema before it gives up and exits (to be restarted).
SCHEMA_WAIT_S = 300
RETRY_AFTER_S = 5
UNANSWERED = Counter(
    "vigil_web_database_unanswered_total",
    "Requests answered 503 because PostgreSQL did not answer: a statement past its timeout, no free connection, "
    "or the server unreachable",
    ["reason"],
)
for _reason in ("timeout", "unavailable"):
    UNANSWERED.labels(_reason)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.web_database_url:
        url = settings.web_database_url
        await wait_for_schema(url, timeout_s=SCHEMA_WAIT_S)
    else:
        url = settings.database_url
        log.warning(
            "VIGIL_WEB_DATABASE_URL is not set: the web connects as the schema's owner, who may change everything; "
            "give it a login in role vigil_web (README, Security)",
            extra={"user": user_of(url)},
        )
        await migrate(url)
    pool = await open_pool(
        url, max_size=settings.database_pool_size, statement_timeout_ms=settings.web_statement_timeout_ms
    )
    app[DB] = pool
    exports = AuditExports(
        url, settings.web_max_audit_exports, settings.web_audit_statement_timeout_ms, app[RESPONSE_TARGETS]
    )
    app[AUDIT_EXPORTS] = exports
    log.info("database", extra={"user": user_of(url), "statement_timeout_ms": settings.web_statement_timeout_ms})

    async def db_ready() -> bool:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    app[READY_CHECKS]["database"] = db_ready
    yield
    exports.close()
    await pool.close()


def _unanswered(request: web.Request, reason: str, message: str) -> web.StreamResponse:
    UNANSWERED.labels(reason).inc()
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if is_api(request):
        error = "query_timeout" if reason == "timeout" else "database_unavailable"
        return problem_response(503, message, error=error, headers=headers)
    response = render(request, "unavailable.html", status=503, message=message, again=request.path_qs)
    response.headers.update(headers)
    return response


@web.middleware
async def database_unanswered(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A query past its statement_timeout, a pool with no free connection, or PostgreSQL gone: 503, never a 500.

    The connection goes back to the pool rolled back, so the next request is served as usual."""
    try:
        return await handler(request)
    except psycopg.errors.QueryCanceled:
        timeout_s = request.app[SETTINGS].web_statement_timeout_ms / 1000
        log.warning("query timed out", extra={"path": request.path, "timeout_s": timeout_s})
        return _unanswered(
            request,
            "timeout",
            f"The database did not answer within {timeout_s:g} s. Try again, or narrow the filters.",
        )
    except (PoolTimeout, psycopg.OperationalError) as exc:
        log.warning("database unavailable", extra={"path": request.path, "error": str(exc)})
        return _unanswered(request, "unavailable", "The database is unavailable. Try again in a moment.")
