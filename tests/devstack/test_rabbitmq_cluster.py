"""The devstack's RabbitMQ cluster really is one: a quorum queue on it keeps a confirmed persistent message when
the node it was published on dies (kill -9), and the dead node comes back into the cluster; Vigil's connection over
every node's URL keeps publishing when its node is killed."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage

from devstack.procs import pid_alive
from devstack.rabbitmq_cluster import RabbitCluster
from devstack.throwaway import new_rabbitmq_cluster, temp_root
from shared.messaging import BrokerUnavailable
from shared.messaging.connection import BrokerConnection
from tests.shared.test_plumbing import command_envelope

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    root = temp_root("vigil-rabbit-cluster-")
    made = new_rabbitmq_cluster(root, nodes=3)
    try:
        started = time.monotonic()
        made.start()
        print(f"3-node RabbitMQ cluster started in {time.monotonic() - started:.1f}s")
        yield made
    finally:
        made.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _get_within(url: str, queue_name: str, timeout: float) -> AbstractIncomingMessage:
    """The queue's next message, retrying while the survivors elect a new leader for it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = await aio_pika.connect(url, timeout=5)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(queue_name, passive=True)
                message = await queue.get(fail=False, timeout=5)
                if message is not None:
                    await message.ack()
                    return message
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no message in {queue_name} via {url} within {timeout}s")
        await asyncio.sleep(0.5)


async def test_quorum_queue_keeps_a_confirmed_message_when_its_node_is_killed(cluster: RabbitCluster) -> None:
    assert cluster.running_nodes() == cluster.node_names
    vhost = f"drill_{uuid.uuid4().hex[:8]}"
    urls = cluster.add_vhost(vhost).split(",")
    assert urls == cluster.urls(vhost) and len(urls) == 3
    queue_name = "drill.quorum"
    body = uuid.uuid4().bytes

    publisher = await aio_pika.connect(urls[0], client_properties={"connection_name": "drill-publisher"})
    try:
        channel = await publisher.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        # Declared with every node up, the queue has a member on each: it survives losing any one.
        assert cluster.quorum_members(queue_name, vhost) == sorted(cluster.node_names)
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue_name
        )
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)

        deadline = time.monotonic() + 15
        while (node := cluster.node_for_connection("drill-publisher")) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert node == 0

        pid = cluster.kill_node(0)
        assert not pid_alive(pid)
    finally:
        # The broker end is gone; closing only tidies up the client.
        try:
            await asyncio.wait_for(publisher.close(), 5)
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError):
            pass

    message = await _get_within(urls[1], queue_name, timeout=30)
    assert message.body == body
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert cluster.running_nodes() == cluster.node_names[1:]

    cluster.start_node(0)
    assert cluster.running_nodes() == cluster.node_names
    assert cluster.quorum_members(queue_name, vhost) == sorted(cluster.node_names)
    cluster.delete_vhost(vhost)


async def test_a_publisher_on_every_node_url_keeps_publishing_when_its_node_is_killed(cluster: RabbitCluster) -> None:
    """Vigil's connection with every node's URL: after its node is killed it moves to another, and publishes are
    confirmed again within seconds. (RabbitMQ 3.10 keeps nacking, for minutes, a channel that met the quorum queue's
    leader election; the connection replaces a nacked channel.)"""
    vhost = f"move_{uuid.uuid4().hex[:8]}"
    link = BrokerConnection(cluster.add_vhost(vhost), producer="drill-mover")
    await link.start()
    try:
        await asyncio.wait_for(link.wait_connected(), 30)
        await link.publish("vigil.commands", "command.comment", command_envelope("before"))
        deadline = time.monotonic() + 15
        while (node := cluster.node_for_connection("drill-mover")) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert node is not None
        await asyncio.to_thread(cluster.kill_node, node)
        killed = time.monotonic()
        refused = 0
        while True:
            try:
                await link.publish("vigil.commands", "command.comment", command_envelope("after"))
                break
            except BrokerUnavailable:
                refused += 1
                assert time.monotonic() - killed < 20, f"still refused after 20 s ({refused} attempts)"
                await asyncio.sleep(0.2)
        print(f"publishing again {time.monotonic() - killed:.1f}s after the kill, {refused} refused meanwhile")
        assert cluster.node_for_connection("drill-mover") != node
    finally:
        await link.close()
        await asyncio.to_thread(cluster.start_node, node)
        cluster.delete_vhost(vhost)
