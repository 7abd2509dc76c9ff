"""The reporter process: wiring only (database, broker, consumer, version pruning); the logic lives in pure modules
beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from aiohttp import web

from services.reporter import pruning
from services.reporter.consumer import ReportHandler
from shared.config import Settings
from shared.db import is_database_outage
from shared.messaging.topology import REPORTER_QUEUE
from shared.service import BROKER, DB, SETTINGS, base_app, broker_ctx, database_ctx


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start consuming once the broker is connected (in the background: /readyz reports the wait)."""
    settings = app[SETTINGS]
    handler = ReportHandler(
        app[DB],
        app[BROKER],
        alertmanager_url=settings.alertmanager_url,
        refresh_interval=timedelta(milliseconds=settings.refresh_interval_ms),
    )
    # Rendering is CPU-bound; two at a time keep one core for the rest of the process.
    starting = asyncio.create_task(
        app[BROKER].consume(REPORTER_QUEUE, handler, is_outage=is_database_outage, batch_size=1, concurrency=2)
    )
    yield
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting


def pruning_ctx(interval_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(
            pruning.run_forever(
                app[DB],
                interval_s=interval_s,
                # Not in the first minute of a (re)start, when a backlog of events may be waiting.
                first_after_s=min(pruning.FIRST_PASS_AFTER_S, interval_s),
            ),
            name="reporter-pruning",
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def build_app(settings: Settings, *, prune_interval_s: float = pruning.INTERVAL_S) -> web.Application:
    app = base_app("reporter", settings)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(consumer_ctx)
    app.cleanup_ctx.append(pruning_ctx(prune_interval_s))
    return app
