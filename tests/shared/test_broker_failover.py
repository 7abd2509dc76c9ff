"""Several broker URLs: the first that answers is used, and when its connection goes away the next one takes over,
with the channels and consumers aio-pika restores. Two virtual hosts of the test broker stand in for two nodes (the
topology declared on both, as a cluster shares it); the three-node cluster itself is `make chaos`'s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from devstack.procs import free_port
from devstack.rabbitmq import RabbitMQ
from shared.config import Settings
from shared.messaging import CORRELATOR_QUEUE, BrokerUnavailable
from shared.messaging.connection import BrokerConnection
from shared.messaging.topology import declare_topology
from tests.broker import drain
from tests.shared.test_plumbing import command_envelope


@pytest.fixture
def two_vhosts(rabbitmq: RabbitMQ) -> Iterator[tuple[str, str]]:
    names = [f"fo_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    urls = [rabbitmq.add_vhost(name) for name in names]
    yield urls[0], urls[1]
    for name in names:
        rabbitmq.delete_vhost(name)


async def declare_everywhere(*urls: str) -> None:
    for url in urls:
        async with await aio_pika.connect(url) as conn:
            await declare_topology(conn, [50])


def vhost_of(connection: Any) -> str:
    return str(connection.url.path).lstrip("/")


async def kill_connections(rabbitmq: RabbitMQ, vhost: str) -> None:
    """What a node going away does to its clients: the server closes their connections. (The management API lists a
    connection once its statistics came in, some seconds after it opened.)"""
    for _ in range(150):
        listed: Any = rabbitmq.api("GET", f"/api/vhosts/{quote(vhost, safe='')}/connections")
        if listed:
            for info in listed:
                rabbitmq.api("DELETE", f"/api/connections/{quote(info['name'], safe='')}")
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no connection to {vhost} was listed")


async def test_a_dead_url_is_skipped_and_a_lost_node_moves_the_connection_to_the_next(
    rabbitmq: RabbitMQ, two_vhosts: tuple[str, str]
) -> None:
    first, second = two_vhosts
    await declare_everywhere(first, second)
    dead = f"amqp://vigil:{rabbitmq.password}@127.0.0.1:{free_port()}/"
    link = BrokerConnection(f"{dead}, {first},{second}", producer="failover-test")
    await link.start()
    try:
        await asyncio.wait_for(link.wait_connected(), 30)
        vhost_a = vhost_of(link.connection)
        assert vhost_a == first.rsplit("/", 1)[1]
        # A consumer of the caller's own, restored by aio-pika wherever the connection goes.
        channel = await link.open_channel(publisher_confirms=False)
        queue = await channel.declare_queue("failover.probe", durable=True, arguments={"x-queue-type": "quorum"})
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await got.put(message.body)

        await queue.consume(consume)
        await link.publish("vigil.commands", "command.comment", command_envelope("on the first"))

        await kill_connections(rabbitmq, vhost_a)
        with pytest.raises(BrokerUnavailable):
            # Caught by the move: refused, not taken for sent.
            for _ in range(200):
                await link.publish("vigil.commands", "command.comment", command_envelope("in the move"))
                await asyncio.sleep(0.01)
        for _ in range(100):
            if link.ready and vhost_of(link.connection) != vhost_a:
                break
            await asyncio.sleep(0.1)
        assert link.ready and vhost_of(link.connection) == second.rsplit("/", 1)[1]
        await link.publish("vigil.commands", "command.comment", command_envelope("on the second"))
        async with await aio_pika.connect(second) as conn:
            probe = await conn.channel()
            await probe.default_exchange.publish(aio_pika.Message(b"to the restored consumer"), "failover.probe")
        assert await asyncio.wait_for(got.get(), 30) == b"to the restored consumer"
    finally:
        await link.close()
    on_first = [m.body for m in await drain(first, CORRELATOR_QUEUE.name)]
    on_second = [m.body for m in await drain(second, CORRELATOR_QUEUE.name)]
    assert any(b"on the first" in body for body in on_first)
    assert any(b"on the second" in body for body in on_second)
    assert not any(b"on the second" in body for body in on_first)


def test_the_setting_takes_several_urls_and_checks_each(settings: Settings) -> None:
    strong = "amqp://vigil:Zq8-Lm3vPx7TtR2wKd@127.0.0.1:5672/"
    two = settings.model_copy(update={}).model_validate({**settings.model_dump(), "amqp_url": f"{strong},{strong}"})
    assert two.amqp_url.count("amqp://") == 2
    for value, message in [
        (f"{strong},", "URL 2 of 2 is empty"),
        (f"{strong},http://x/", "URL 2 of 2 must start with amqp"),
        (f"{strong},amqp://vigil:guest@127.0.0.1:5673/", "URL 2: its password"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings.model_validate({**settings.model_dump(), "amqp_url": value})
