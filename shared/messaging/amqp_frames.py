"""AMQP 0-9-1 frames for confirmed, persistent JSON messages: `basic.publish`, its content header and body,
encoded directly.

Ingest and the correlator's outbox publish thousands of messages a second that differ only in routing key, id,
type and body; pamqp's general encoder, reached through aio-pika message by message, cost more than the work that
made them. The layout is fixed by the AMQP 0-9-1 specification, and tests compare every byte with pamqp's encoding
of the same message (tests/shared/test_amqp_frames.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_END = b"\xce"
BASIC_CLASS = 60
BASIC_PUBLISH = 40
PERSISTENT = 2
CONTENT_TYPE = "application/json"

# Content-header property flags, highest bit first, in the order their values follow.
FLAG_CONTENT_TYPE = 1 << 15
FLAG_HEADERS = 1 << 13
FLAG_DELIVERY_MODE = 1 << 12
FLAG_PRIORITY = 1 << 11
FLAG_MESSAGE_ID = 1 << 7
FLAG_TIMESTAMP = 1 << 6
FLAG_TYPE = 1 << 5
FLAG_APP_ID = 1 << 3

_FRAME_HEAD = struct.Struct(">BHI")
_PUBLISH_HEAD = struct.pack(">HHH", BASIC_CLASS, BASIC_PUBLISH, 0)  # class, method, ticket (0)
_HEADER_START = struct.Struct(">HHQH")  # class, weight (0), body size, property flags
_TIMESTAMP = struct.Struct(">Q")
_EMPTY_TABLE = b"\x00\x00\x00\x00"
_PRIORITY_0 = b"\x00"


@dataclass(frozen=True, slots=True)
class JsonMessage:
    """A persistent `application/json` message ready for the wire; the properties left None (or empty, as pamqp
    does) are not sent. The message id is required: a returned message is matched to its publish by it."""

    exchange: str
    routing_key: str
    message_id: str
    body: bytes
    type: str | None
    app_id: str | None
    timestamp: datetime | None = None
    # Unroutable is an error (a Basic.Return) unless the publisher says nobody needs to be bound.
    mandatory: bool = True


def shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + FRAME_END


class JsonFrames:
    """The frames of JSON messages on one channel.

    `aio_pika_defaults`: also send the empty headers table and priority 0 that every `aio_pika.Message` carries, so
    that a publisher whose messages aio-pika used to encode changes no property its subscribers see.
    """

    def __init__(self, channel: int, max_body_frame: int, *, aio_pika_defaults: bool = False) -> None:
        self.channel = channel
        self.max_body_frame = max_body_frame
        self._base_flags = FLAG_CONTENT_TYPE | FLAG_DELIVERY_MODE | FLAG_MESSAGE_ID
        leading = shortstr(CONTENT_TYPE)
        if aio_pika_defaults:
            self._base_flags |= FLAG_HEADERS | FLAG_PRIORITY
            leading += _EMPTY_TABLE + bytes((PERSISTENT,)) + _PRIORITY_0
        else:
            leading += bytes((PERSISTENT,))
        # The properties before the message id: the same for every message.
        self._leading = leading
        # Exchanges, and the (type, app id) pairs with the flags they set, repeat across a batch: encoded once.
        self._exchanges: dict[str, bytes] = {}
        self._trailing: dict[tuple[str | None, str | None], tuple[int, bytes]] = {}

    def _new_exchange(self, name: str) -> bytes:
        encoded = self._exchanges[name] = shortstr(name)
        return encoded

    def _new_type_and_app_id(self, message_type: str | None, app_id: str | None) -> tuple[int, bytes]:
        """The flags and bytes of the properties after the timestamp; empty ones are not sent, as pamqp does."""
        flags, trailing = self._base_flags, b""
        if message_type:
            flags, trailing = flags | FLAG_TYPE, trailing + shortstr(message_type)
        if app_id:
            flags, trailing = flags | FLAG_APP_ID, trailing + shortstr(app_id)
        known = self._trailing[(message_type, app_id)] = (flags, trailing)
        return known

    def encode(self, message: JsonMessage) -> bytes:
        """The message's frames; ValueError when it has no message id or a name too long for AMQP."""
        if not message.message_id:
            raise ValueError("a message without a message id")
        # The caches are read inline: a method call per message would cost ingest a tenth of the encoding.
        exchange = self._exchanges.get(message.exchange) or self._new_exchange(message.exchange)
        method = _PUBLISH_HEAD + exchange + shortstr(message.routing_key) + (b"\x01" if message.mandatory else b"\x00")
        flags, trailing = self._trailing.get((message.type, message.app_id)) or self._new_type_and_app_id(
            message.type, message.app_id
        )
        properties = self._leading + shortstr(message.message_id)
        if message.timestamp is not None:
            flags |= FLAG_TIMESTAMP
            properties += _TIMESTAMP.pack(int(message.timestamp.timestamp()))
        body = message.body
        header = _HEADER_START.pack(BASIC_CLASS, 0, len(body), flags) + properties + trailing
        parts = [frame(FRAME_METHOD, self.channel, method), frame(FRAME_HEADER, self.channel, header)]
        for start in range(0, len(body), self.max_body_frame):
            parts.append(frame(FRAME_BODY, self.channel, body[start : start + self.max_body_frame]))
        return b"".join(parts)
