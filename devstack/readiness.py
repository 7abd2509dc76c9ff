"""Waiting for services to answer 200 on /readyz."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import httpx


async def wait_ready(
    readyz_urls: Mapping[str, str], *, timeout: float = 90, give_up: asyncio.Event | None = None
) -> None:
    """Return when every URL answers 200; raise TimeoutError naming the ones that never did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = dict(readyz_urls)
    async with httpx.AsyncClient(timeout=2) as client:
        while pending:
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        del pending[name]
            if not pending or (give_up is not None and give_up.is_set()):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            await asyncio.sleep(0.2)
