"""The frames `shared/messaging/amqp_frames.py` encodes are, byte for byte, what pamqp encodes for the same message:
with ingest's properties, with the outbox's, and with those aio-pika gives an `aio_pika.Message` of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiormq.abc import ChannelFrame
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from shared.messaging.amqp_frames import JsonFrames, JsonMessage
from shared.messaging.batch_publisher import as_message

STAMP = datetime(2026, 11, 25, 10, 0, 1, 999_999, tzinfo=UTC)


def pamqps(message: JsonMessage, properties: spec.Basic.Properties, channel: int, max_frame: int) -> bytes:
    body = message.body
    frames: list[Any] = [
        spec.Basic.Publish(exchange=message.exchange, routing_key=message.routing_key, mandatory=message.mandatory),
        ContentHeader(properties=properties, body_size=len(body)),
    ]
    frames += [ContentBody(body[i : i + max_frame]) for i in range(0, len(body), max_frame)]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload


messages = st.builds(
    JsonMessage,
    exchange=st.sampled_from(["vigil.alerts", "vigil.incidents", ""]),
    routing_key=st.text(max_size=60),
    message_id=st.uuids().map(str),
    body=st.binary(max_size=300),
    type=st.none() | st.sampled_from(["alert.received", "incident.opened", "incident.updated"]),
    app_id=st.none() | st.sampled_from(["ingest", "correlator"]) | st.text(max_size=20),
    timestamp=st.none() | st.just(STAMP),
    mandatory=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(message=messages, max_frame=st.integers(1, 100), channel=st.integers(1, 2047))
def test_frames_equal_pamqps_encoding_of_the_same_properties(
    message: JsonMessage, max_frame: int, channel: int
) -> None:
    """Ingest's way: no headers table, no priority; the properties left None or empty are not sent."""
    properties = spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message.message_id,
        timestamp=message.timestamp.replace(microsecond=0) if message.timestamp else None,
        message_type=message.type,
        app_id=message.app_id,
    )
    ours = JsonFrames(channel, max_frame).encode(message)
    assert ours == pamqps(message, properties, channel, max_frame)


@settings(max_examples=200, deadline=None)
@given(message=messages, max_frame=st.integers(1, 100), channel=st.integers(1, 2047))
def test_with_aio_pikas_defaults_the_frames_are_what_aio_pika_writes_for_the_message(
    message: JsonMessage, max_frame: int, channel: int
) -> None:
    """`as_message` is what the fallback publishes; aiormq encodes its `properties` exactly so (basic_publish)."""
    ours = JsonFrames(channel, max_frame, aio_pika_defaults=True).encode(message)
    assert ours == pamqps(message, as_message(message).properties, channel, max_frame)


def test_a_name_too_long_for_amqp_or_a_missing_message_id_is_refused() -> None:
    message = JsonMessage("vigil.incidents", "k" * 256, "id-1", b"{}", "incident.opened", "correlator")
    with pytest.raises(ValueError, match="over 255 bytes"):
        JsonFrames(1, 1000).encode(message)
    with pytest.raises(ValueError, match="without a message id"):
        JsonFrames(1, 1000).encode(JsonMessage("vigil.incidents", "k", "", b"{}", None, None))
