"""Helpers the benchmarks share: their progress lines on stderr and percentiles of what they measured.

Not a benchmark itself (`python -m bench` skips it); also the throwaway, migrated PostgreSQL the read benchmarks
load. The benchmarks have grown three ways of taking a percentile;
each is kept as it was so their numbers stay comparable with earlier runs, and each says which benchmark uses it.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from devstack.throwaway import new_postgres, temp_root
from shared.db import migrate


def progress_for(bench: str) -> Callable[[str], None]:
    """`progress(message)` for one benchmark: the line `bench <bench>: <message>` on stderr, flushed at once."""

    def progress(message: str) -> None:
        print(f"bench {bench}: {message}", file=sys.stderr, flush=True)

    return progress


def percentile(values: list[float], q: float) -> float:
    """The sorted values' element at index floor(q·n), the last at most; NaN for no values (ingest, storage)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def percentile_nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the ceil(q·n)-th smallest value, the smallest at least (enricher, similar)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def percentile_rounded_index(values: list[float], q: float) -> float:
    """The sorted values' element at index round(q·(n-1)) (web)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def migrated_postgres(prefix: str, progress: Callable[[str], None]) -> Iterator[str]:
    """A throwaway PostgreSQL (fsync off) with a migrated `vigil` database: its URL, for the block's duration."""
    root = temp_root(prefix)
    server = new_postgres(root)
    try:
        progress("starting PostgreSQL")
        server.start(fsync=False)
        url = server.admin_url("vigil")
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'vigil'").fetchone():
                conn.execute("CREATE DATABASE vigil")
        asyncio.run(migrate(url))
        yield url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
