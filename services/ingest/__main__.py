"""Vigil ingest service."""

import gc

from services.ingest.app import build_app
from shared.service import run

# Everything imported so far (modules, pydantic schemas, aio-pika, aiohttp) lives as long as the process.
# Frozen, the collector stops rescanning it on every full collection: those took ~50 ms each and were
# most of ingest's latency tail at 1,000 alerts/s (bench/ingest.py).
gc.freeze()
run("ingest", build_app)
