"""The correlator process: wiring only (rules, database, broker, consumer, outbox, sweeper, retention); the logic
lives in the pure modules beside it (rules, matchers, lifecycle, retention's rules)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from services.correlator import retention, silences
from services.correlator.batches import correlate_batch, split_notification, sweep
from services.correlator.outbox import AfterCommit
from services.correlator.rules import RulesError, RuleSet, load_rules
from shared.alert_limits import AlertLimits
from shared.asyncapi import asyncapi_document
from shared.config import ConfigError, Settings
from shared.db import is_database_outage
from shared.messaging.lanes import Delivery
from shared.messaging.topology import CORRELATOR_QUEUE
from shared.service import BROKER, DB, READY_CHECKS, SETTINGS, base_app, broker_ctx, database_ctx

log = logging.getLogger(__name__)

RULES = web.AppKey("rules", RuleSet)
# One transaction per batch is what makes thousands of alerts per second possible.
BATCH_SIZE = 200
BATCH_WAIT_S = 0.05
# A notification is one message of up to hundreds of alerts: a batch also ends at this many bytes of messages, about
# BATCH_SIZE alerts of the usual size.
BATCH_BYTES = 128 * 1024
# Two batches in flight: one computes while the other waits on PostgreSQL. Per-group locks keep them apart.
CONCURRENCY = 2
SWEEP_INTERVAL_S = 15.0
OUTBOX_INTERVAL_S = 2.0


def build_app(
    settings: Settings,
    *,
    sweep_interval_s: float = SWEEP_INTERVAL_S,
    retention_interval_s: float = retention.INTERVAL_S,
) -> web.Application:
    try:
        rules = load_rules(settings.correlation_rules)
    except RulesError as exc:
        print(f"vigil: invalid correlation rules (VIGIL_CORRELATION_RULES)\n  {exc}", file=sys.stderr)
        raise ConfigError(2) from None
    app = base_app("correlator", settings)
    app[RULES] = rules
    app.router.add_get("/asyncapi.json", asyncapi_json)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(_correlator_ctx(sweep_interval_s, retention_interval_s))
    return app


async def asyncapi_json(_: web.Request) -> web.Response:
    return web.json_response(asyncapi_document())


def make_handler(app: web.Application, after_commit: AfterCommit) -> Callable[[list[Delivery]], Awaitable[None]]:
    pool, rules, limits = app[DB], app[RULES], AlertLimits.from_settings(app[SETTINGS])

    async def handle(deliveries: list[Delivery]) -> None:
        after_commit.submit(await correlate_batch(pool, rules, deliveries, limits))

    return handle


def _correlator_ctx(
    sweep_interval_s: float, retention_interval_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool, broker, rules = app[DB], app[BROKER], app[RULES]
        consuming = asyncio.Event()
        after_commit = AfterCommit(pool, broker, interval_s=OUTBOX_INTERVAL_S)

        async def start_consumer() -> None:
            await broker.consume(
                CORRELATOR_QUEUE,
                make_handler(app, after_commit),
                is_outage=is_database_outage,
                # Both batches in flight must fit in the prefetch window, or the second one starves.
                batch_size=max(1, min(BATCH_SIZE, app[SETTINGS].prefetch // CONCURRENCY)),
                batch_wait_s=BATCH_WAIT_S,
                concurrency=CONCURRENCY,
                batch_bytes=BATCH_BYTES,
                split=split_notification,
            )
            consuming.set()
            log.info("consuming", extra={"queue": CORRELATOR_QUEUE.name})

        async def sweep_forever() -> None:
            while True:
                await asyncio.sleep(sweep_interval_s)
                try:
                    after_commit.submit(await sweep(pool, rules, datetime.now(UTC)))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sweep failed; will retry")

        async def consumer_ready() -> bool:
            return consuming.is_set()

        app[READY_CHECKS]["consumer"] = consumer_ready
        settings = app[SETTINGS]
        tasks = [
            asyncio.create_task(start_consumer(), name="correlator-consume"),
            asyncio.create_task(after_commit.run_forever(), name="correlator-publish"),
            asyncio.create_task(sweep_forever(), name="correlator-sweep"),
            asyncio.create_task(
                retention.run_forever(
                    pool,
                    retention.Policy.from_settings(app[SETTINGS]),
                    interval_s=retention_interval_s,
                    # Not in the first minute of a (re)start, when a backlog of alerts may be waiting.
                    first_after_s=min(retention.FIRST_PASS_AFTER_S, retention_interval_s),
                ),
                name="correlator-retention",
            ),
        ]
        if settings.alertmanager_api_urls:
            poller = silences.run_forever(
                pool,
                rules,
                settings.alertmanager_api_urls,
                interval_s=settings.alertmanager_poll_interval_s,
                acknowledges=settings.silence_acknowledges,
                submit=after_commit.submit,
            )
            tasks.append(asyncio.create_task(poller, name="correlator-silences"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return ctx
