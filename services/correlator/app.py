"""The correlator process: wiring only (database, broker, consumer); the logic lives in pure modules beside it."""

from __future__ import annotations

from aiohttp import web

from shared.config import Settings
from shared.service import base_app, broker_ctx, database_ctx


def build_app(settings: Settings) -> web.Application:
    app = base_app("correlator", settings)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(broker_ctx)
    return app
