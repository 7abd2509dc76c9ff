"""The frame publisher against the real broker: one outcome per message of a batch, whatever happens to the others,
and nothing sent when its channel cannot take frames."""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import DeliveryError, PublishError

from shared.contracts import INCIDENTS_EXCHANGE
from shared.messaging import Broker, BrokerUnavailable, JsonMessage, frame_publisher
from shared.messaging.frame_publisher import FramePublisher, FramesUnsupported
from tests.broker import drain, new_broker

# A queue that refuses every message makes the broker nack what is routed there.
REFUSES = {"x-max-length": 0, "x-overflow": "reject-publish"}


def message(routing_key: str, n: int, *, mandatory: bool = True) -> JsonMessage:
    body = b'{"n":%d}' % n
    return JsonMessage(INCIDENTS_EXCHANGE, routing_key, f"id-{n}", body, "incident.opened", "test", mandatory=mandatory)


async def bind(amqp_url: str, queue: str, routing_key: str, arguments: dict[str, Any] | None = None) -> None:
    """A queue of the test's own on vigil.incidents."""
    async with await aio_pika.connect(amqp_url) as conn:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, arguments=arguments)
        await declared.bind(INCIDENTS_EXCHANGE, routing_key)


async def test_each_message_of_a_batch_has_its_own_outcome(amqp_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Confirmed, refused by a full queue (nack), returned as unroutable, or not encodable: one batch, one write,
    each message told apart; after the nack the next batch goes out on a new channel and is confirmed."""
    broker = await new_broker(amqp_url)
    publisher = FramePublisher(broker, 5.0, name="test")
    try:
        await bind(amqp_url, "test.taken", "taken")
        await bind(amqp_url, "test.full", "refused", REFUSES)
        batch = [
            message("taken", 1),
            message("refused", 2),
            message("nobody.binds.this", 3),
            message("nobody.binds.this", 4, mandatory=False),
            message("k" * 256, 5),
            message("taken", 6),
        ]
        outcomes = await publisher.publish(batch)
        again = await publisher.publish([message("taken", 7)])
        got = sorted(m.body for m in await drain(amqp_url, "test.taken", wait=0.3))
    finally:
        await publisher.close()
        await broker.close()
    confirmed, refused, returned, unrouted, unencodable, confirmed_too = outcomes
    assert confirmed is None and confirmed_too is None and unrouted is None
    assert isinstance(refused, BrokerUnavailable) and isinstance(refused.__cause__, DeliveryError)
    assert isinstance(returned, BrokerUnavailable) and isinstance(returned.__cause__, PublishError)
    assert isinstance(unencodable, ValueError)
    assert again == [None]
    assert [r for r in caplog.records if str(r.msg).startswith("the broker nacked a publish")]
    assert got == [b'{"n":1}', b'{"n":6}', b'{"n":7}']


async def test_without_a_broker_every_message_is_unavailable(amqp_url: str) -> None:
    broker = Broker(amqp_url, producer="test")  # never started: not connected
    publisher = FramePublisher(broker, 1.0, name="test")
    outcomes = await publisher.publish([message("a", 1), message("b", 2)])
    assert [type(o) for o in outcomes] == [BrokerUnavailable, BrokerUnavailable]


async def test_a_channel_without_the_bookkeeping_is_refused_before_anything_is_sent(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frame_publisher, "BOOKKEEPING", (*frame_publisher.BOOKKEEPING, "gone_in_a_later_aiormq"))
    broker = await new_broker(amqp_url)
    publisher = FramePublisher(broker, 5.0, name="test")
    try:
        await bind(amqp_url, "test.taken", "taken")
        with pytest.raises(FramesUnsupported, match="gone_in_a_later_aiormq"):
            await publisher.publish([message("taken", 1)])
        assert await drain(amqp_url, "test.taken", wait=0.3) == []
    finally:
        await publisher.close()
        await broker.close()
