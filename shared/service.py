"""The life of a service process: one aiohttp app with /healthz, /readyz and /metrics, plus cleanup
contexts that open and close the database pool and the broker connection in a fixed order.

Every service builds its app with `base_app`, appends what it needs to `app.cleanup_ctx`, and is run by
`run` (SIGINT and SIGTERM stop it cleanly: consumers drain, pools close).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from shared.config import Settings, load_settings
from shared.cpu_priority import lower_priority
from shared.db import Pool, migrate, open_pool
from shared.http_server import app_runner
from shared.jsonlog import setup_logging
from shared.messaging.broker import Broker

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("service", str)
DB = web.AppKey("db", Pool)
BROKER = web.AppKey("broker", Broker)
READY_CHECKS = web.AppKey("ready_checks", dict[str, Callable[[], Awaitable[bool]]])

STARTED = Gauge("vigil_start_time_seconds", "When this service process started", ["service"])


def base_app(service: str, settings: Settings, *, client_max_size: int = 1024**2) -> web.Application:
    app = web.Application(client_max_size=client_max_size)
    app[SERVICE] = service
    app[SETTINGS] = settings
    app[READY_CHECKS] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    STARTED.labels(service).set(time.time())
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[SERVICE]})


async def readyz(request: web.Request) -> web.Response:
    """200 when every dependency answers within a second, else 503 naming the ones that do not."""
    checks = request.app[READY_CHECKS]

    async def run(check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            return await asyncio.wait_for(check(), 1.0)
        except Exception:
            return False

    results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
    ok = all(results.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": results}, status=200 if ok else 503)


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Apply migrations (serialised across replicas), then open the pool for the app's lifetime."""
    settings = app[SETTINGS]
    await migrate(settings.database_url)
    pool = await open_pool(settings.database_url, max_size=settings.database_pool_size)
    app[DB] = pool

    async def db_ready() -> bool:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    app[READY_CHECKS]["database"] = db_ready
    yield
    await pool.close()


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect to RabbitMQ in the background: the HTTP side starts, and /readyz says 503 until it is up."""
    settings = app[SETTINGS]
    broker = Broker(
        settings.amqp_url,
        producer=app[SERVICE],
        retry_delays_ms=settings.retry_delays_ms,
        defer_ms=settings.refresh_interval_ms,
        max_attempts=settings.max_attempts,
        prefetch=settings.prefetch,
        publish_timeout_s=settings.publish_timeout_s,
        stall_after_s=settings.stall_after_s,
    )
    await broker.start()
    app[BROKER] = broker

    async def broker_ready() -> bool:
        return broker.ready

    async def consumers_progressing() -> bool:
        # A lane holding messages that it settles none of (a database outage, a hung handler) is not ready: an
        # orchestrator, a load balancer and Vigil's own alert rules see it, not only the logs.
        stalled = broker.stalled_lanes()
        if stalled:
            log.warning("consumer lanes stalled", extra={"lanes": stalled, "after_s": settings.stall_after_s})
        return not stalled

    app[READY_CHECKS]["broker"] = broker_ready
    app[READY_CHECKS]["consumers"] = consumers_progressing
    yield
    await broker.close()


def service_port(service: str, settings: Settings) -> int:
    return int(getattr(settings, f"{service}_port"))


# The youngest generation is collected after this many new container objects, not CPython's 700. A correlator batch
# holds tens of thousands of objects for the few milliseconds it takes; at 700 they were caught alive, moved to the
# older generations and rescanned by full collections: 17 % of the correlator's CPU in `make bench`'s grouped storm,
# under 1 % with this and the freeze. Cyclic garbage waits a little longer, which memory does not show: in the soak
# (`make bench SOAK=1`) the enricher's and reporter's RSS stayed within 1 MB of a run with CPython's thresholds.
GC_THRESHOLDS = (50_000, 10, 10)


def run(service: str, build_app: Callable[[Settings], web.Application], *, background: bool = False) -> None:
    """Entry point of `python -m services.<service>`. A `background` service (one that works through a backlog
    that coalesces) runs at `VIGIL_BACKGROUND_NICE`; it is set before any thread starts, as Linux keeps a nice
    value per thread and new threads inherit it."""
    settings = load_settings()
    setup_logging(service, settings.log_level)
    if background:
        lower_priority(settings.background_nice)
    app = build_app(settings)
    port = service_port(service, settings)
    log.info("starting", extra={"host": settings.host, "port": port, "read_timeout_s": settings.web_read_timeout_s})

    async def serve() -> None:
        # Not web.run_app: it builds aiohttp's own runner, whose connections wait forever for a slow client's
        # request (shared/http_server.py). Stopping is the same: the signal ends the wait, cleanup drains.
        runner = app_runner(app, settings.web_read_timeout_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runner.setup()
        # What startup made (modules, pydantic schemas, pools, rules, the app) lives as long as the process. Frozen,
        # the cyclic collector stops rescanning it at every full collection: in ingest those took ~50 ms each and
        # were most of its latency tail at 1,000 alerts/s (bench/ingest.py).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            await web.TCPSite(runner, settings.host, port).start()
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
    log.info("stopped")
