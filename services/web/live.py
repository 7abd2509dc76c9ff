"""Live view: incident events from `vigil.incidents`, fanned out to the browsers connected by SSE.

Each web process declares its own exclusive, auto-delete, non-durable queue, bound with `#` while at least one
client is connected: every replica sees every event while someone watches, and nothing at all while nobody does (in
a storm, decoding 50,000 events for no one was a core's worth of work shared by the web and RabbitMQ). The queue
disappears with the process (it is not part of the shared topology, and losing a live update is harmless: the page
reads PostgreSQL on reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from shared.contracts import INCIDENTS_EXCHANGE, IncidentEvent, MessageType, RawEnvelope, ReportReady
from shared.messaging import Broker

log = logging.getLogger(__name__)
CLIENT_BUFFER = 100
# A new client waits this long at most for the queue to be bound before its stream starts (the broker may be away).
BIND_WAIT_S = 5.0
CLIENTS = Gauge("vigil_web_live_clients", "Browsers and scripts connected to the live event stream")
DROPPED = Counter("vigil_web_live_dropped_total", "Live clients dropped for falling behind")
REFUSED = Counter("vigil_web_live_refused_total", "Live clients refused: VIGIL_WEB_MAX_LIVE_CLIENTS were connected")


class LiveFull(Exception):
    """The hub has as many clients as it may."""


def live_payload(envelope: RawEnvelope) -> dict[str, Any] | None:
    """What a browser needs to update its list row or incident header; None for events it ignores."""
    try:
        if envelope.type.startswith("incident."):
            event = IncidentEvent.model_validate(envelope.data)
            snap = event.incident
            return {
                "type": envelope.type,
                "change": event.change,
                "actor": event.actor,
                "key": snap.key,
                "title": snap.title,
                "state": snap.state.value,
                "severity": snap.severity,
                "hosts": snap.hosts,
                "alert_count": snap.alert_count,
                "firing_count": snap.firing_count,
                "revision": snap.revision,
                "opened_at": snap.opened_at.isoformat().replace("+00:00", "Z"),
            }
        if envelope.type == MessageType.report_ready:
            ready = ReportReady.model_validate(envelope.data)
            return {"type": envelope.type, "key": ready.key, "report_version": ready.report_version}
    except ValidationError:
        log.warning("undecodable live event ignored", extra={"type": envelope.type, "id": str(envelope.id)})
    return None


def sse_frame(payload: dict[str, Any], event_id: int) -> bytes:
    # json.dumps never emits a raw newline, so the data stays one SSE line.
    return f"id: {event_id}\nevent: incident\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


@dataclass
class LiveHub:
    """Subscribers get a bounded queue each; one too slow to keep up is dropped rather than slowing others. At most
    `max_clients` at once: each holds a connection, a task and a queue of up to CLIENT_BUFFER events."""

    max_clients: int
    clients: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    sequence: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while some client is connected / while none is; the feed binds and unbinds its queue on them.
    watched: asyncio.Event = field(default_factory=asyncio.Event)
    unwatched: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while the feed's queue is bound: events published from then on reach the clients.
    bound: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.unwatched.set()

    def _count_changed(self) -> None:
        (self.unwatched if self.clients else self.watched).clear()
        (self.watched if self.clients else self.unwatched).set()

    def publish(self, payload: dict[str, Any]) -> None:
        self.sequence += 1
        for queue in list(self.clients):
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:
                self.clients.discard(queue)
                self._count_changed()
                DROPPED.inc()
                # Its backlog is dropped too, so the end-of-stream mark fits and its stream closes now; the
                # browser reconnects and the page catches up from the database.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of this client's events for the length of the block; LiveFull when there is no room."""
        if len(self.clients) >= self.max_clients:
            REFUSED.inc()
            raise LiveFull
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(CLIENT_BUFFER)
        self.clients.add(queue)
        self._count_changed()
        CLIENTS.inc()
        try:
            if self.ready.is_set():
                # So that what happens after a client connected reaches it (unless the broker is away).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.bound.wait(), BIND_WAIT_S)
            yield queue
        finally:
            self.clients.discard(queue)
            self._count_changed()
            CLIENTS.dec()

    def close(self) -> None:
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self.clients.clear()
        self._count_changed()


async def feed(broker: Broker, hub: LiveHub) -> None:
    """Consume incident events into the hub for as long as the process runs, bound while some client watches."""
    await broker.wait_connected()
    channel = await broker.open_channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=100)
    exchange = await channel.get_exchange(INCIDENTS_EXCHANGE, ensure=False)
    queue = await channel.declare_queue("", exclusive=True, auto_delete=True, durable=False)

    async def on_message(message: AbstractIncomingMessage) -> None:
        if not hub.clients:
            return  # bound a moment longer than watched
        try:
            envelope = RawEnvelope.model_validate_json(message.body)
        except ValidationError:
            log.warning("undecodable message on the incidents exchange ignored by the live view")
            return
        payload = live_payload(envelope)
        if payload is not None:
            hub.publish(payload)

    await queue.consume(on_message, no_ack=True)
    hub.ready.set()
    log.info("live view subscribed", extra={"queue": queue.name})
    while True:
        await (hub.watched if not hub.bound.is_set() else hub.unwatched).wait()
        try:
            if hub.bound.is_set():
                hub.bound.clear()
                await queue.unbind(exchange, "#")
            else:
                await queue.bind(exchange, "#")
                hub.bound.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The broker went away meanwhile: the robust channel restores the queue as it was, then this tries again.
            log.warning("live view could not (un)bind its queue; trying again", exc_info=True)
            await asyncio.sleep(1.0)
            await broker.wait_connected()
