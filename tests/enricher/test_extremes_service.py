"""A spike shorter than the step, against the real Prometheus (Debian's, started here) scraping an exporter of this
test's own every second: the enriched context's peak is the spike's value, though no step value saw it, for a bare
selector (range selectors over the raw samples) and a derived expression (subqueries at the resolution)."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web

from devstack.procs import free_port
from devstack.prometheus import Prometheus
from services.enricher.config import EnrichmentConfig, PrometheusConfig, PromQuery, WindowConfig
from services.enricher.enrich import Upstreams, enrich
from services.enricher.plan import AlertFacts, IncidentFacts
from services.enricher.upstream import Upstream
from tests.conftest import running

pytestmark = pytest.mark.slow

BASE, SPIKE = 10.0, 95.0
SPIKE_SECONDS = 4.0
STEP_S = 30


@dataclass
class Exporter:
    spiking: bool = False
    served: list[tuple[float, float]] = field(default_factory=list)

    async def metrics(self, _: web.Request) -> web.Response:
        value = SPIKE if self.spiking else BASE
        self.served.append((time.time(), value))
        text = f'# TYPE vigil_spike_value gauge\nvigil_spike_value{{node="spike-1"}} {value}\n'
        return web.Response(text=text, content_type="text/plain")

    def scrapes(self) -> int:
        return len(self.served)


@dataclass
class Scraped:
    exporter: Exporter
    prometheus: Prometheus
    spike_from: float  # when the first spiking scrape was served
    spike_to: float


@pytest.fixture(scope="module")
async def scraped() -> AsyncIterator[Scraped]:
    exporter = Exporter()
    app = web.Application()
    app.router.add_get("/metrics", exporter.metrics)
    base = Path(tempfile.mkdtemp(prefix="vigil-prom-spike-"))
    port = free_port()
    async with running(app, port):
        config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 900ms}}
scrape_configs:
  - job_name: spike
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
        prometheus = Prometheus(base, free_port(), config)
        await asyncio.to_thread(prometheus.start)
        try:
            await wait_for(lambda: exporter.scrapes() >= 3)
            exporter.spiking = True
            await asyncio.sleep(SPIKE_SECONDS)
            exporter.spiking = False
            spikes = [t for t, v in exporter.served if v == SPIKE]
            assert spikes, "Prometheus did not scrape during the spike"
            # Past the end of the step that holds the spike (see window_around), with a few ordinary samples after.
            await wait_for(lambda: time.time() > spikes[0] + 25)
            yield Scraped(exporter, prometheus, spikes[0], spikes[-1])
        finally:
            await asyncio.to_thread(prometheus.stop)
            shutil.rmtree(base, ignore_errors=True)


async def wait_for(condition: object, timeout: float = 45) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


def config() -> EnrichmentConfig:
    return EnrichmentConfig(
        window=WindowConfig(before=timedelta(seconds=STEP_S), min_step=timedelta(seconds=STEP_S)),
        prometheus=PrometheusConfig(
            timeout=timedelta(seconds=3),
            resolution=timedelta(seconds=1),  # the scrape interval: every sample is some evaluation's newest
            queries=[
                PromQuery(name="raw", query='vigil_spike_value{node=~"{{host_regex}}"}'),
                PromQuery(name="derived", query='2 * max by (node) (vigil_spike_value{node=~"{{host_regex}}"})'),
            ],
        ),
    )


async def test_a_spike_shorter_than_the_step_is_the_peak(scraped: Scraped) -> None:
    # Steps at first alert - 30 s, first alert, first alert + 30 s, ...: the spike falls between two of them.
    # Whole seconds: Prometheus answers in milliseconds.
    first_alert_at = datetime.fromtimestamp(math.floor(scraped.spike_from - 10), UTC)
    now = datetime.now(UTC)
    generator = f"{scraped.prometheus.url}/graph?g0.expr={quote('vigil_spike_value > 50')}"
    alert = AlertFacts("SpikeHigh", "spike-1", {"node": "spike-1"}, generator, first_alert_at, None)
    incident = IncidentFacts(1, "spike", 1, ["spike-1"], first_alert_at, None, [alert])
    cfg = config()
    upstreams = Upstreams(
        Upstream.create("prometheus", scraped.prometheus.url, cfg.prometheus),
        Upstream.create("loki", "http://127.0.0.1:9", cfg.loki),  # no Loki template: never asked
    )
    try:
        trusted = frozenset({scraped.prometheus.url.removeprefix("http://")})
        context = await enrich(incident, cfg, upstreams, now=now, trusted_hosts=trusted)
    finally:
        await upstreams.close()

    assert context.complete, context.missing
    assert context.window_start == first_alert_at - timedelta(seconds=STEP_S)
    by_name = {m.name: m for m in context.metrics}
    assert set(by_name) == {"raw", "derived", "alert: SpikeHigh"}
    spike_step_end = first_alert_at + timedelta(seconds=STEP_S)
    for name, factor in (("raw", 1), ("alert: SpikeHigh", 1), ("derived", 2)):
        m = by_name[name]
        # One value per step never saw the spike; the peak and the chart's band did.
        assert max(v for _, v in m.points) == factor * BASE, name
        assert (m.peak, m.max, m.min) == (factor * SPIKE, factor * SPIKE, factor * BASE), name
        assert m.peak_at == spike_step_end, name
        assert (spike_step_end, factor * BASE, factor * SPIKE) in m.bands, name
        assert len(m.bands) == len(m.points) and [at for at, _, _ in m.bands] == [at for at, _ in m.points]
        # Every sample counts for the average: a few spiking ones among some tens of ordinary ones.
        assert m.avg is not None and factor * BASE < m.avg < factor * (BASE + SPIKE) / 2, name
