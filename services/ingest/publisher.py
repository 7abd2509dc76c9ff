"""How ingest hands a request's messages to RabbitMQ: a request is answered only once the broker confirmed every
one of its messages.

The publishing is the shared batch publisher's (shared/messaging/batch_publisher.py): frames written in one socket
write per request on a channel of ingest's own, falling back to aio-pika's publish, for the rest of the process, the
first time that channel turns out not to be one frames can be written on. This module only turns its per-message
outcomes into the request's: all confirmed, or BrokerUnavailable (503).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.messaging import BatchPublisher, Broker, BrokerUnavailable, JsonMessage, open_batch_publisher


class Publisher:
    """A request's messages, every one mandatory and confirmed."""

    def __init__(self, batches: BatchPublisher) -> None:
        self.batches = batches

    async def publish_batch(self, messages: Sequence[JsonMessage]) -> None:
        """Returns once the broker confirmed every message; raises BrokerUnavailable otherwise.

        A message the broker could not route (mandatory) or refused (nack) fails the whole request, which the sender
        then retries: some messages may then arrive twice, which consumers tolerate (at least once).
        """
        outcomes = await self.batches.publish(messages)
        failures = [o for o in outcomes if o is not None]
        for failure in failures:
            if not isinstance(failure, BrokerUnavailable):
                raise failure
        if failures:
            raise BrokerUnavailable(f"broker did not take {len(failures)} of {len(outcomes)} messages: {failures[0]}")

    async def close(self) -> None:
        await self.batches.close()


def open_publisher(broker: Broker, timeout_s: float, *, frames: bool = True) -> Publisher:
    """The fast path falling back to aio-pika's publish, or (`frames=False`) aio-pika's publish only."""
    return Publisher(open_batch_publisher(broker, timeout_s, name="ingest", frames=frames))
