"""AMQP 0-9-1 frames for one confirmed, persistent JSON message: `basic.publish`, its content header and
body, encoded directly.

Ingest publishes thousands of messages a second that differ only in routing key, id and body; pamqp's
general encoder spent more time on them than validating the webhook did. The layout is fixed by the AMQP
0-9-1 specification, and tests compare every byte with pamqp's encoding of the same message.
"""

from __future__ import annotations

import struct
from datetime import datetime

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_END = b"\xce"
BASIC_CLASS = 60
BASIC_PUBLISH = 40
PERSISTENT = 2

# Content-header property flags, highest bit first, in the order their values follow.
FLAG_CONTENT_TYPE = 1 << 15
FLAG_DELIVERY_MODE = 1 << 12
FLAG_MESSAGE_ID = 1 << 7
FLAG_TIMESTAMP = 1 << 6
FLAG_TYPE = 1 << 5
FLAG_APP_ID = 1 << 3
FLAGS = FLAG_CONTENT_TYPE | FLAG_DELIVERY_MODE | FLAG_MESSAGE_ID | FLAG_TIMESTAMP | FLAG_TYPE | FLAG_APP_ID

_FRAME_HEAD = struct.Struct(">BHI")
_HEADER_START = struct.Struct(">HHQH")  # class, weight (0), body size, property flags


def shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(kind, channel, len(payload)) + payload + FRAME_END


class JsonPublisherFrames:
    """Everything fixed for one publisher (channel, exchange, content type, type, app id) encoded once."""

    def __init__(self, channel: int, exchange: str, message_type: str, app_id: str, max_body_frame: int) -> None:
        self.channel = channel
        self.max_body_frame = max_body_frame
        self._publish_head = struct.pack(">HHH", BASIC_CLASS, BASIC_PUBLISH, 0) + shortstr(exchange)
        self._content_type = shortstr("application/json") + bytes((PERSISTENT,))
        self._type_app = shortstr(message_type) + shortstr(app_id)

    def message(self, routing_key: str, message_id: str, timestamp: datetime, body: bytes, *, mandatory: bool) -> bytes:
        method = self._publish_head + shortstr(routing_key) + (b"\x01" if mandatory else b"\x00")
        header = (
            _HEADER_START.pack(BASIC_CLASS, 0, len(body), FLAGS)
            + self._content_type
            + shortstr(message_id)
            + struct.pack(">Q", int(timestamp.timestamp()))
            + self._type_app
        )
        parts = [frame(FRAME_METHOD, self.channel, method), frame(FRAME_HEADER, self.channel, header)]
        for start in range(0, len(body), self.max_body_frame):
            parts.append(frame(FRAME_BODY, self.channel, body[start : start + self.max_body_frame]))
        return b"".join(parts)
