"""A small, runnable subscriber to Vigil's incident events: how another service plugs in.

    python -m examples.subscriber --bind 'incident.opened.#' --bind 'incident.*.critical'
    python -m examples.subscriber --bind '#' --queue my-service.incidents --forward-url http://127.0.0.1:9000/hook

It declares its own queue (a private one that disappears with it, or with --queue a durable one that keeps
events while it is down), binds it to the `vigil.incidents` topic exchange with the given routing keys, and
prints each event as one JSON line on stdout, or POSTs it as JSON to --forward-url, with the routing key and
`late` added. Delivery is at-least-once: it skips envelope ids it has already handled. Events of one incident
can arrive out of order; none is dropped for it: one whose incident snapshot is older (lower `revision`) than
one it already passed on gets `"late": true`, so a consumer that keeps the latest state ignores its snapshot
and one that reacts to, say, `incident.opened` still sees it. A message is acknowledged only once printed or
accepted by the forward URL (2xx); 5xx and connection errors are retried with backoff, a 4xx is logged and the
event skipped. Logs go to stderr. See docs/subscribers.md and docs/asyncapi.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import OrderedDict
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts import INCIDENTS_EXCHANGE, IncidentEventType, MessageType

log = logging.getLogger("vigil.subscriber")

# incident.enriched carries the revision it was computed for and report.ready none: neither is a newer state of
# the incident, so neither counts as one, nor is ever late.
NOT_A_STATE = frozenset({IncidentEventType.enriched.value, MessageType.report_ready.value})


def incident_state(envelope: dict[str, Any]) -> tuple[str, int] | None:
    """The incident key and revision of an event that announces a state of its incident."""
    if envelope.get("type") in NOT_A_STATE:
        return None
    data = envelope.get("data")
    incident = data.get("incident") if isinstance(data, dict) else None
    if not isinstance(incident, dict):
        return None
    key, revision = incident.get("key"), incident.get("revision")
    if isinstance(key, str) and isinstance(revision, int) and not isinstance(revision, bool):
        return key, revision
    return None


class Seen:
    """Recent envelope ids and the highest revision passed on per incident, bounded in memory."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.revisions: OrderedDict[str, int] = OrderedDict()

    def is_new(self, envelope: dict[str, Any]) -> bool:
        """False for an envelope id already handled: a redelivery."""
        return str(envelope.get("id", "")) not in self.ids

    def is_late(self, envelope: dict[str, Any]) -> bool:
        """True when a newer state of its incident was already passed on: its snapshot is out of date."""
        state = incident_state(envelope)
        return state is not None and state[1] < self.revisions.get(state[0], state[1])

    def remember(self, envelope: dict[str, Any]) -> None:
        self.ids[str(envelope.get("id", ""))] = None
        state = incident_state(envelope)
        if state is not None:
            key, revision = state
            self.revisions[key] = max(revision, self.revisions.get(key, revision))
            self.revisions.move_to_end(key)
        for store in (self.ids, self.revisions):
            while len(store) > self.size:
                store.popitem(last=False)


async def forward(client: httpx.AsyncClient, url: str, line: dict[str, Any], stop: asyncio.Event) -> bool:
    """POST until accepted (True) or refused with a 4xx (False); 5xx and network errors are retried."""
    delay = 0.5
    while not stop.is_set():
        try:
            response = await client.post(url, json=line)
            if response.status_code < 300:
                return True
            if 400 <= response.status_code < 500:
                log.error("forward URL refused the event", extra={"status": response.status_code, "id": line["id"]})
                return False
            log.warning("forward URL failed, retrying", extra={"status": response.status_code, "in_s": delay})
        except httpx.HTTPError as exc:
            log.warning("forward URL unreachable, retrying", extra={"error": str(exc), "in_s": delay})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 30)
    raise asyncio.CancelledError


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    connection = await aio_pika.connect_robust(args.amqp_url, client_properties={"connection_name": "subscriber"})
    seen = Seen()
    async with connection, httpx.AsyncClient(timeout=10) as client:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        exchange = await channel.declare_exchange(INCIDENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        if args.queue:
            queue = await channel.declare_queue(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
        else:
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        for pattern in args.bind:
            await queue.bind(exchange, pattern)
        log.info("subscribed", extra={"queue": queue.name, "bindings": args.bind})

        async def handle(message: AbstractIncomingMessage) -> None:
            try:
                envelope = json.loads(message.body)
                if not isinstance(envelope, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                log.error("not a Vigil envelope, skipped", extra={"error": str(exc)})
                await message.ack()
                return
            if seen.is_new(envelope):
                line = {"routing_key": message.routing_key, "late": seen.is_late(envelope), **envelope}
                if args.forward_url:
                    await forward(client, args.forward_url, line, stop)
                else:
                    sys.stdout.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
                    sys.stdout.flush()
                seen.remember(envelope)
            await message.ack()

        tag = await queue.consume(handle)
        await stop.wait()
        with contextlib.suppress(Exception):
            await queue.cancel(tag)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.subscriber", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bind",
        action="append",
        required=True,
        help="routing key pattern on vigil.incidents, e.g. 'incident.opened.#' (repeatable)",
    )
    parser.add_argument("--queue", default="", help="durable queue name (default: a private queue for this run)")
    parser.add_argument("--forward-url", default="", help="POST each event as JSON here instead of printing it")
    parser.add_argument("--amqp-url", default=os.environ.get("VIGIL_AMQP_URL", "amqp://vigil@127.0.0.1:55672/"))
    parser.add_argument("--prefetch", type=int, default=50)
    args = parser.parse_args(argv)
    if args.forward_url and not args.forward_url.startswith(("http://", "https://")):
        parser.error("--forward-url must be an http(s) URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrJson())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in ("aio_pika", "aiormq", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(args, stop)

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(amain())
    return 0


class _StderrJson(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname.lower(), "msg": record.getMessage()}
        skip = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
        entry.update({k: v for k, v in vars(record).items() if k not in skip})
        return json.dumps(entry, default=str)


if __name__ == "__main__":
    raise SystemExit(main())
