"""A connected shared Broker for a test, and reading a queue empty: for tests of the plumbing and of the alert path."""

from __future__ import annotations

import asyncio

import aio_pika

from shared.messaging import Broker


async def new_broker(url: str, **kwargs: object) -> Broker:
    kwargs = {"retry_delays_ms": (50, 100), **kwargs}
    broker = Broker(url, producer="test", **kwargs)  # type: ignore[arg-type]
    await broker.start()
    await asyncio.wait_for(broker.wait_connected(), 30)
    return broker


async def drain(url: str, queue: str, *, wait: float = 0.5) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in `queue`, waiting until none arrives for `wait` seconds."""
    got = []
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        q = await channel.get_queue(queue, ensure=True)
        while True:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(wait)
                message = await q.get(fail=False, no_ack=True)
                if message is None:
                    return got
            got.append(message)
