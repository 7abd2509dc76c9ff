"""The enricher process: wiring only (config, upstream clients, database, broker, consumer); the logic lives
in pure modules beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from services.enricher import promql
from services.enricher.config import EnrichmentConfig, EnrichmentConfigError, load_config
from services.enricher.consumer import Enricher
from services.enricher.enrich import Upstreams
from services.enricher.upstream import Upstream
from shared.config import ConfigError, Settings
from shared.db import is_database_outage
from shared.messaging.topology import ENRICHER_QUEUE
from shared.service import BROKER, DB, SETTINGS, base_app, broker_ctx, database_ctx

log = logging.getLogger(__name__)

CONFIG = web.AppKey("enrichment_config", EnrichmentConfig)
TRUSTED_HOSTS = web.AppKey("trusted_hosts", frozenset)
UPSTREAMS = web.AppKey("upstreams", Upstreams)
ENRICHER = web.AppKey("enricher", Enricher)
# In a storm most events find their incident already enriched, or enriched within the interval: a batch decides for
# all its incidents with one query, and an incident with several events in it is enriched once.
EVENT_BATCH = 50
EVENT_BATCH_WAIT_S = 0.05
LANES = 2


async def upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, config = app[SETTINGS], app[CONFIG]
    upstreams = Upstreams(
        prometheus=Upstream.create("prometheus", settings.prometheus_url, config.prometheus),
        loki=Upstream.create("loki", settings.loki_url, config.loki),
    )
    app[UPSTREAMS] = upstreams
    yield
    # Registered before the broker: closed only after the consumers have drained.
    await upstreams.close()


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    interval = timedelta(milliseconds=app[SETTINGS].refresh_interval_ms)
    enricher = Enricher(
        app[DB],
        app[BROKER],
        app[CONFIG],
        app[UPSTREAMS],
        refresh_interval=interval,
        trusted_hosts=app[TRUSTED_HOSTS],
        concurrency=app[CONFIG].concurrency,
    )
    app[ENRICHER] = enricher
    # Several lanes: while one batch waits on a slow upstream, the others go on.
    starting = asyncio.create_task(
        app[BROKER].consume(
            ENRICHER_QUEUE,
            enricher.handle,
            is_outage=is_database_outage,
            batch_size=EVENT_BATCH,
            batch_wait_s=EVENT_BATCH_WAIT_S,
            concurrency=LANES,
        ),
        name="enricher-consume",
    )
    yield
    if not starting.done():
        starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting


def build_app(settings: Settings, config: EnrichmentConfig | None = None) -> web.Application:
    if config is None:
        try:
            config = load_config(settings.enrichment_config)
        except EnrichmentConfigError as exc:
            print(f"vigil: invalid enrichment config (VIGIL_ENRICHMENT_CONFIG)\n  {exc}", file=sys.stderr)
            raise ConfigError(2) from None
    try:
        trusted = promql.trusted_hosts(settings.prometheus_url, settings.prometheus_trusted_hosts)
    except ValueError as exc:
        print(f"vigil: invalid VIGIL_PROMETHEUS_TRUSTED_HOSTS\n  {exc}", file=sys.stderr)
        raise ConfigError(2) from None
    # Each lane holds one batch: competing replicas share the queue, none holds more than it works on.
    settings = settings.model_copy(update={"prefetch": EVENT_BATCH * LANES})
    app = base_app("enricher", settings)
    app[CONFIG] = config
    app[TRUSTED_HOSTS] = trusted
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(upstreams_ctx)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(consumer_ctx)
    return app
