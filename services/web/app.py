"""The web HTTP service: wiring only; request handling lives in modules beside it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import jinja2
from aiohttp import web
from prometheus_client import Histogram

from services.web import api, insights, pages, silencing
from services.web.access import TokenBook, load_users
from services.web.appkeys import LIVE, TEMPLATES, TOKENS, USERS
from services.web.database import database_ctx, database_unanswered
from services.web.downloads import RESPONSE_TARGETS, XLSX_CACHE
from services.web.gate import gate, setup_access
from services.web.live import LiveHub, feed
from services.web.presentation import time_tag
from services.web.xlsx_cache import XlsxCache
from shared.config import ConfigError, Settings
from shared.reports.response_targets import TargetsError, load_targets
from shared.service import BROKER, READY_CHECKS, SETTINGS, base_app, broker_ctx

HERE = Path(__file__).parent
# No inline script or style anywhere: an alert's text that slipped through escaping still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


REQUEST_SECONDS = Histogram(
    "vigil_web_request_seconds",
    "Time to answer a web request, by route and status",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5),
)


@web.middleware
async def timing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # The route's pattern, not the path: one series per route, whatever the incident keys.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        if route not in ("/api/v1/stream", "/events"):
            REQUEST_SECONDS.labels(route, request.method, str(status)).observe(time.perf_counter() - started)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/static/") and "v" in request.query:
        # Versioned asset URLs (static('app.js') adds a content hash) never change content: cache for good.
        response.headers.setdefault("Cache-Control", "public, max-age=31536000, immutable")
    else:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = time_tag
    return env


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = LiveHub(app[SETTINGS].web_max_live_clients)
    app[LIVE] = hub
    task = asyncio.create_task(feed(app[BROKER], hub), name="live-feed")

    async def live_ready() -> bool:
        return hub.ready.is_set()

    app[READY_CHECKS]["live"] = live_ready
    yield
    hub.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_streams(app: web.Application) -> None:
    # Open event streams would otherwise hold shutdown until its timeout.
    app[LIVE].close()


def build_app(settings: Settings) -> web.Application:
    try:
        # Checked now, not at the first audit export: a bad file stops the web at start, like the correlation rules.
        targets = load_targets(settings.response_targets_file)
    except TargetsError as exc:
        print(f"vigil: invalid response targets (VIGIL_RESPONSE_TARGETS_FILE)\n  {exc}", file=sys.stderr)
        raise ConfigError(2) from None
    app = base_app("web", settings)
    app[RESPONSE_TARGETS] = targets
    app[XLSX_CACHE] = XlsxCache()
    setup_access(app, settings)
    app.middlewares.extend([timing, security_headers, database_unanswered, gate])
    app[USERS] = load_users(settings.web_users_file)
    app[TOKENS] = TokenBook.from_settings(settings)
    env = templates()
    app[TEMPLATES] = env
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(live_ctx)
    app.on_shutdown.append(close_streams)
    api.add_routes(app)
    pages.add_routes(app)
    insights.add_routes(app)
    silencing.add_routes(app)
    static = app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
    env.globals["static"] = lambda name: str(static.url_for(filename=name))
    return app
