"""The coalescer's rule on plain data: notifications that wait while a message is being confirmed go out together,
a lone one goes at once, limits hold, and a failure or a departed sender touches only its own requests.

The publish here is a function whose confirm the test releases; against the real broker: test_ingest.py's
`test_webhooks_sent_together_share_messages_and_keep_their_own_sender_and_group`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from services.ingest.coalesce import Coalescer
from shared.messaging import BrokerUnavailable, JsonMessage

AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


class Broker:
    """Records each published message; its confirm comes when the test says so (or fails with `error`)."""

    def __init__(self) -> None:
        self.messages: list[JsonMessage] = []
        self.confirms: list[asyncio.Future[None]] = []

    async def publish(self, messages: list[JsonMessage]) -> None:
        [message] = messages
        self.messages.append(message)
        confirm: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.confirms.append(confirm)
        await confirm

    def items(self, n: int) -> list[str]:
        return [item["alert"] for item in json.loads(self.messages[n].body)["data"]["alerts"]]

    def confirm(self, n: int, error: Exception | None = None) -> None:
        if error is None:
            self.confirms[n].set_result(None)
        else:
            self.confirms[n].set_exception(error)


def item(name: str) -> bytes:
    return json.dumps({"alert": name}).encode()


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def coalescer_on(broker: Broker, *, max_alerts: int = 1000, timeout_s: float = 5) -> Coalescer:
    return Coalescer(broker.publish, max_alerts=max_alerts, max_bytes=1 << 20, timeout_s=timeout_s, in_flight=1)


async def requested(coalescer: Coalescer, *names: str) -> list[asyncio.Task[None]]:
    """One request of one alert per name, in that order, each handed over before the next."""
    requests = [asyncio.create_task(coalescer.publish([item(name)], AT)) for name in names]
    await settled()
    return requests


async def test_a_lone_notification_goes_at_once_and_alone() -> None:
    broker = Broker()
    coalescer = coalescer_on(broker)
    request = asyncio.create_task(coalescer.publish([item("a1"), item("a2")], AT))
    await settled()
    assert [broker.items(0)] == [["a1", "a2"]]
    assert not request.done()  # answered only after the confirm
    broker.confirm(0)
    await request
    envelope = json.loads(broker.messages[0].body)
    assert (envelope["type"], envelope["producer"], envelope["occurred_at"]) == (
        "alerts.received",
        "ingest",
        "2026-12-03T10:00:00Z",
    )
    assert broker.messages[0].routing_key == "alerts.alertmanager"


async def test_notifications_waiting_for_a_confirm_go_together_in_arrival_order() -> None:
    broker = Broker()
    coalescer = coalescer_on(broker)
    [first] = await requested(coalescer, "first")
    later = await requested(coalescer, "later0", "later1", "later2")
    assert len(broker.messages) == 1  # the others wait for the slot
    broker.confirm(0)
    await first
    await settled()
    assert broker.items(1) == ["later0", "later1", "later2"]
    assert not any(r.done() for r in later)
    broker.confirm(1)
    await asyncio.gather(*later)
    assert len(broker.messages) == 2


async def test_a_merged_message_holds_no_more_alerts_than_one_request_may() -> None:
    broker = Broker()
    coalescer = coalescer_on(broker, max_alerts=3)
    requests = await requested(coalescer, "busy")
    for name in ("a", "b", "c", "d"):
        requests.append(asyncio.create_task(coalescer.publish([item(f"{name}1"), item(f"{name}2")], AT)))
    await settled()
    for n in range(5):
        broker.confirm(n)
        await settled()
    await asyncio.gather(*requests)
    # Two alerts each: one request per message fits under three, never a request cut in two.
    assert [broker.items(n) for n in range(1, 5)] == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"], ["d1", "d2"]]


async def test_a_failed_publish_fails_the_requests_it_held_and_no_other() -> None:
    broker = Broker()
    coalescer = coalescer_on(broker)
    [first] = await requested(coalescer, "first")
    merged = await requested(coalescer, "m0", "m1")
    broker.confirm(0)
    await first
    await settled()
    [after] = await requested(coalescer, "after")
    broker.confirm(1, BrokerUnavailable("nack"))
    for request in merged:
        with pytest.raises(BrokerUnavailable, match="nack"):
            await request
    await settled()
    assert broker.items(2) == ["after"]
    broker.confirm(2)
    await after


async def test_a_request_whose_sender_went_away_is_left_out() -> None:
    broker = Broker()
    coalescer = coalescer_on(broker)
    [first] = await requested(coalescer, "first")
    gone, stays = await requested(coalescer, "gone", "stays")
    gone.cancel()
    broker.confirm(0)
    await first
    await settled()
    assert broker.items(1) == ["stays"]
    broker.confirm(1)
    await stays
    assert gone.cancelled()


async def test_with_the_broker_silent_every_request_is_answered_within_the_timeout() -> None:
    broker = Broker()  # never confirms
    coalescer = coalescer_on(broker, max_alerts=1, timeout_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # One alert a message: the third waits behind two messages, never for two timeouts.
    requests = await requested(coalescer, "a0", "a1", "a2")
    outcomes = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 2)
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes), outcomes
    assert loop.time() - started < 0.5
    assert [broker.items(0)] == [["a0"]]  # the others never left: their senders will send them again
    await coalescer.close()
