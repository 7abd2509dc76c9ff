"""A real Alertmanager (Debian's) for a test, on a free loopback port, in a directory removed afterwards."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from devstack.alertmanager import Alertmanager
from devstack.procs import free_port


@asynccontextmanager
async def running_alertmanager(config: str) -> AsyncIterator[Alertmanager]:
    scratch = Path(tempfile.mkdtemp(prefix="vigil-alertmanager-"))
    am = Alertmanager(scratch / "alertmanager", free_port(), config)
    await asyncio.to_thread(am.start)
    try:
        yield am
    finally:
        await asyncio.to_thread(am.stop)
        shutil.rmtree(scratch, ignore_errors=True)
