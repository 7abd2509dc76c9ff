"""The ingest HTTP service: wiring only; request handling lives in modules beside it.

Ingest needs no database: /readyz checks the broker, and that at least one sender token is configured
(without one every request is refused with 401, so the service is up but useless, and says why).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime

from aiohttp import web

from services.ingest.auth import SenderTokens
from services.ingest.coalesce import Coalescer
from services.ingest.handlers import Ingest, json_errors
from services.ingest.openapi import EVENTS_PATH, WEBHOOK_PATH, openapi_document
from services.ingest.publisher import Publisher, open_publisher
from shared.alert_limits import AlertLimits
from shared.config import Settings
from shared.messaging import JsonMessage
from shared.service import BROKER, READY_CHECKS, base_app, broker_ctx

log = logging.getLogger(__name__)

PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher")
COALESCER: web.AppKey[Coalescer] = web.AppKey("coalescer")


def build_app(settings: Settings, *, frames: bool | None = None) -> web.Application:
    """`frames=False`: publish through aio-pika only, never by the fast path (shared/messaging/frame_publisher.py);
    None: as `VIGIL_INGEST_FAST_PUBLISH` says."""
    # aiohttp's own limit would answer 413 in plain text; ingest counts the body itself and answers JSON.
    app = base_app("ingest", settings, client_max_size=settings.ingest_max_body_bytes + 1)
    app.middlewares.append(json_errors)
    app.cleanup_ctx.append(broker_ctx)
    tokens = SenderTokens.from_settings(settings)

    async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
        app[PUBLISHER] = open_publisher(
            app[BROKER],
            settings.publish_timeout_s,
            frames=settings.ingest_fast_publish if frames is None else frames,
        )
        app[COALESCER] = Coalescer(
            publish,
            max_alerts=settings.ingest_max_alerts,
            max_bytes=settings.ingest_max_body_bytes,
            timeout_s=settings.publish_timeout_s,
        )
        yield
        await app[COALESCER].close()
        await app[PUBLISHER].close()

    async def publish(messages: list[JsonMessage]) -> None:
        await app[PUBLISHER].publish_batch(messages)

    async def publish_notification(items: list[bytes], received_at: datetime) -> None:
        await app[COALESCER].publish(items, received_at)

    ingest = Ingest(
        tokens=tokens,
        max_body_bytes=settings.ingest_max_body_bytes,
        publish=publish,
        publish_notification=publish_notification,
        limits=AlertLimits.from_settings(settings),
        max_alerts=settings.ingest_max_alerts,
    )
    document = openapi_document(settings.ingest_max_body_bytes, settings.ingest_max_alerts)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(document)

    async def tokens_configured() -> bool:
        return bool(tokens)

    async def sender_check(app: web.Application) -> AsyncIterator[None]:
        if not tokens:
            log.error("no sender tokens configured: set VIGIL_INGEST_TOKEN or VIGIL_INGEST_TOKENS")
        app[READY_CHECKS]["sender_tokens"] = tokens_configured
        yield

    app.cleanup_ctx.append(publisher_ctx)
    app.cleanup_ctx.append(sender_check)
    app.router.add_post(WEBHOOK_PATH, ingest.webhook)
    app.router.add_post(EVENTS_PATH, ingest.events)
    app.router.add_get("/openapi.json", openapi)
    return app
