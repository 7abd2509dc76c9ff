"""RabbitMQ plumbing on aio-pika, one module per job:

- `connection.py`: the robust connection, confirmed publishing, envelope encoding;
- `lanes.py`: consumer lanes, batching, telling an outage from a bad message, stall metrics;
- `retry.py`: retries through delay queues, parking, deferral, the attempts header;
- `topology.py`: what is declared on the broker (exchanges, queues, dead-lettering);
- `broker.py`: `Broker`, the three configured together, which is what a service holds;
- `batch_publisher.py`: a batch of JSON messages published with one outcome per message, through frames encoded by
  `amqp_frames.py` and written by `frame_publisher.py` (one socket write per batch), or aio-pika's publish.

The names services use are re-exported here.
"""

from shared.messaging.amqp_frames import JsonMessage
from shared.messaging.batch_publisher import BatchPublisher, open_batch_publisher
from shared.messaging.broker import Broker
from shared.messaging.connection import BrokerUnavailable
from shared.messaging.lanes import BatchHandler, Delivery, OutageTest
from shared.messaging.retry import PendingCopies, PermanentError
from shared.messaging.topology import CORRELATOR_QUEUE, ENRICHER_QUEUE, REPORTER_QUEUE, SERVICE_QUEUES, QueueSpec

__all__ = [
    "CORRELATOR_QUEUE",
    "ENRICHER_QUEUE",
    "REPORTER_QUEUE",
    "SERVICE_QUEUES",
    "BatchHandler",
    "BatchPublisher",
    "Broker",
    "BrokerUnavailable",
    "Delivery",
    "JsonMessage",
    "OutageTest",
    "PendingCopies",
    "PermanentError",
    "QueueSpec",
    "open_batch_publisher",
]
