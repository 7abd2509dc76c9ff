"""`make chaos`: fault drills while alerts stream in. Each drill starts a fresh system (devstack.harness), streams
Alertmanager-shaped webhooks through ingest, breaks something halfway, waits for the system to settle, then
accounts for every alert: sent (accepted by ingest), stored (rows in PostgreSQL), lost (sent but not stored),
duplicated incidents, incidents whose `incident.opened` event never reached a subscriber, and the seconds in which
senders got 503 (or no answer) and had to retry.

The cluster drills run on a three-node RabbitMQ cluster (the services given every node's URL) or on a PostgreSQL
primary with a synchronous streaming standby (the services given a multi-host URL with target_session_attrs=read-write):
kill_rabbitmq_node, rabbitmq_rolling_restart, postgres_failover.

    python -m devstack.chaos                 # every drill, full length
    python -m devstack.chaos --short kill_correlator
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
import psycopg

from devstack.alertstorm import WebhookSender, alert, occurrence, webhook
from devstack.harness import LocalVigil
from devstack.hostile import hostile_set, stored_fingerprint
from devstack.procs import StackError
from shared import broker_urls
from shared.contracts import INCIDENTS_EXCHANGE
from shared.messaging.connection import FailoverConnection
from shared.messaging.topology import CORRELATOR_QUEUE

PROBE_QUEUE = "chaos.probe"
STORED_ALERTS = "SELECT fingerprint, starts_at FROM alerts"
COUNTS = """SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL),
                  (SELECT count(*) FROM incidents),
                  (SELECT count(DISTINCT host) FROM alerts)"""
ANNOUNCED = "SELECT key FROM incidents WHERE announced"


@dataclass
class DrillResult:
    drill: str
    sent: int
    stored: int
    lost: int
    duplicated_incidents: int
    lost_events: int
    incidents: int
    ingest_retries: int
    # Seconds in which some webhook got 503 or no answer (and was sent again, as Alertmanager does).
    unavailable_s: int
    seconds: float
    # Where the hostile alerts went (poison drill): stored (bounded), refused (4xx), parked, or held (none of those).
    hostile: dict[str, int] | None = None


@dataclass
class Drill:
    name: str
    fault: Callable[[LocalVigil], Awaitable[None]]
    twice: bool = False
    replicas: int = 1
    hostile: int = 0  # hostile alerts mixed into the stream
    rabbitmq_nodes: int = 1
    postgres_standby: bool = False


async def _kill_correlator(vigil: LocalVigil) -> None:
    vigil.kill("correlator")


async def _restart_rabbitmq(vigil: LocalVigil) -> None:
    await vigil.restart_rabbitmq(down_for=2)


async def _restart_postgres(vigil: LocalVigil) -> None:
    await vigil.restart_postgres(down_for=2)


async def _nothing(vigil: LocalVigil) -> None:
    return None


async def _node_of(vigil: LocalVigil, service: str) -> int:
    """The cluster node `service`'s broker connection is on (the management API lists it some seconds after)."""
    assert vigil.cluster is not None
    for _ in range(150):
        node = await asyncio.to_thread(vigil.cluster.node_for_connection, service)
        if node is not None:
            return node
        await asyncio.sleep(0.2)
    raise StackError(f"no broker connection of {service} is listed")


async def _kill_rabbitmq_node(vigil: LocalVigil) -> None:
    assert vigil.cluster is not None
    node = await _node_of(vigil, "ingest")
    if await _node_of(vigil, "correlator") != node:
        print("chaos: ingest and the correlator are on different nodes; killing ingest's", file=sys.stderr)
    await asyncio.to_thread(vigil.cluster.kill_node, node)
    print(f"chaos: killed RabbitMQ node {vigil.cluster.node_names[node]}", file=sys.stderr, flush=True)


async def _rabbitmq_rolling_restart(vigil: LocalVigil) -> None:
    assert vigil.cluster is not None
    for node in range(vigil.cluster.size):
        await asyncio.to_thread(vigil.cluster.restart_node, node)
        print(f"chaos: restarted RabbitMQ node {vigil.cluster.node_names[node]}", file=sys.stderr, flush=True)


async def _postgres_failover(vigil: LocalVigil) -> None:
    assert vigil.standby is not None
    await asyncio.to_thread(vigil.postgres.kill)
    # A failover manager notices a dead primary after some seconds; then promotes.
    await asyncio.sleep(2)
    await asyncio.to_thread(vigil.standby.promote)
    print(f"chaos: killed the primary, promoted the standby on port {vigil.standby.port}", file=sys.stderr, flush=True)


DRILLS = {
    d.name: d
    for d in (
        Drill("kill_correlator", _kill_correlator),
        Drill("restart_rabbitmq", _restart_rabbitmq),
        Drill("restart_postgres", _restart_postgres),
        Drill("two_correlators", _nothing, replicas=2),
        Drill("duplicate_delivery", _nothing, twice=True),
        Drill("poison", _nothing, hostile=50),
        Drill("kill_rabbitmq_node", _kill_rabbitmq_node, rabbitmq_nodes=3),
        Drill("rabbitmq_rolling_restart", _rabbitmq_rolling_restart, rabbitmq_nodes=3),
        Drill("postgres_failover", _postgres_failover, postgres_standby=True),
    )
}


class EventProbe:
    """A subscriber of our own: a durable queue on vigil.incidents that outlives a broker restart, connected to
    every node of a cluster in turn as the services are."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: set[str] = set()
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        urls = [aio_pika.connection.make_url(url, reconnect_interval=1) for url in broker_urls.split(self.url)]
        self.connection = FailoverConnection(urls)
        await self.connection.connect(timeout=10)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(INCIDENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(PROBE_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, "incident.#")
        await queue.consume(self._on_message)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            body = json.loads(message.body)
            if body["type"] == "incident.opened":
                self.opened.add(body["data"]["incident"]["key"])

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


async def run_drill(drill: Drill, *, alerts_per_s: int = 200, seconds: float = 10, hosts: int = 40) -> DrillResult:
    started = time.monotonic()
    async with LocalVigil(
        services=("ingest", "correlator"),
        rabbitmq_nodes=drill.rabbitmq_nodes,
        postgres_standby=drill.postgres_standby,
    ) as vigil:
        for n in range(2, drill.replicas + 1):
            vigil.add_replica("correlator", f"correlator-{n}")
        await vigil.wait_ready([f"correlator-{n}" for n in range(2, drill.replicas + 1)])
        probe = EventProbe(vigil.amqp_url)
        await probe.start()
        sender = WebhookSender(f"{vigil.url('ingest')}/api/v1/webhooks/alertmanager", "harness-sender-token-01")
        accepted: set[tuple[str, str]] = set()
        per_webhook = 5
        webhooks = int(alerts_per_s * seconds / per_webhook)
        t0 = datetime.now(UTC).replace(microsecond=0)
        odd, broken = hostile_set(drill.hostile, seed=12, t0=t0)
        # Odd alerts ride along in ordinary webhooks, spread over the stream; broken ones go alone.
        riders = {i * webhooks // max(1, len(odd)): a for i, a in enumerate(odd)}
        loners = {i * webhooks // max(1, len(broken)) + 1: a for i, a in enumerate(broken)}
        hostile_accepted: list[dict[str, object]] = []
        refused = 0

        async def send_one(i: int) -> None:
            nonlocal refused
            host = f"drill-host-{i % hosts:03d}"
            alerts = [
                alert(f"DrillAlert{i}_{j}", host, starts_at=t0 + timedelta(seconds=i), severity="warning")
                for j in range(per_webhook)
            ]
            rider = riders.get(i)
            body = webhook([*alerts, rider] if rider else alerts)
            copies = 2 if drill.twice else 1
            results = await asyncio.gather(*(sender.send(body) for _ in range(copies)))
            if any(results):
                accepted.update(occurrence(a) for a in alerts)
                if rider:
                    hostile_accepted.append(rider)
            if (loner := loners.get(i)) is not None:
                if await sender.send(webhook([loner])):
                    hostile_accepted.append(loner)
                else:
                    refused += 1

        fault_done = asyncio.Event()

        async def stream() -> None:
            # `seconds` of alerts, and on while the fault lasts longer (a rolling restart), then a second more.
            interval = per_webhook / alerts_per_s
            tasks = []
            next_at = time.monotonic()
            i = 0
            while i < webhooks or not fault_done.is_set():
                tasks.append(asyncio.create_task(send_one(i)))
                i += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            for _ in range(int(alerts_per_s / per_webhook)):
                tasks.append(asyncio.create_task(send_one(i)))
                i += 1
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*tasks)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(seconds / 2)
        await drill.fault(vigil)
        fault_done.set()
        await streaming
        db_url = vigil.database_url
        stored, incidents, distinct_hosts = await settle(db_url, len(accepted) + len(hostile_accepted))
        await wait_for_events(probe, db_url)
        keys = await announced_keys(db_url)
        await probe.close()
        await sender.aclose()
        hostile = None
        if drill.hostile:
            hostile = await where_hostile_went(vigil, hostile_accepted, {fp for fp, _ in stored}, refused)
    lost = len(accepted - stored)
    return DrillResult(
        drill=drill.name,
        sent=len(accepted),
        stored=len(stored & accepted),
        lost=lost,
        duplicated_incidents=incidents - distinct_hosts,
        lost_events=len(keys - probe.opened),
        incidents=incidents,
        ingest_retries=sender.retries,
        unavailable_s=len(sender.unavailable_at),
        seconds=round(time.monotonic() - started, 1),
        hostile=hostile,
    )


async def where_hostile_went(
    vigil: LocalVigil, accepted: list[dict[str, object]], stored: set[str], refused: int
) -> dict[str, int]:
    """Each hostile alert ingest accepted is stored (under the fingerprint its limits give it), parked, or held."""
    parked: set[str] = set()
    async with await aio_pika.connect(broker_urls.split(vigil.amqp_url)[0]) as conn:
        queue = await (await conn.channel()).declare_queue(f"{CORRELATOR_QUEUE.name}.parking", passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                parked.add(json.loads(message.body)["data"]["alert"]["fingerprint"])
    fingerprints = [stored_fingerprint(a) for a in accepted]
    kept = sum(fp in stored for fp in fingerprints)
    held_back = sum(fp not in stored and fp in parked for fp in fingerprints)
    return {
        "stored": kept,
        "refused_4xx": refused,
        "parked": held_back,
        "held": len(fingerprints) - kept - held_back,
    }


async def settle(db_url: str, expected: int, quiet_s: float = 30, limit_s: float = 120) -> tuple[set, int, int]:
    """Wait until every expected alert is stored and the outbox is drained, or nothing changes for `quiet_s`.

    Returns the stored occurrences, the number of incidents and the number of distinct hosts alerted on (the
    default rule groups by host, so any incident beyond one per host is a duplicate)."""
    deadline = time.monotonic() + limit_s
    last, last_change = -1, time.monotonic()
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                rows = await (await conn.execute(STORED_ALERTS)).fetchall()
                counts = await (await conn.execute(COUNTS)).fetchone()
        except psycopg.OperationalError:
            await asyncio.sleep(0.5)
            continue
        assert counts is not None
        unpublished, incidents, hosts = (int(n) for n in counts)
        stored = {(fp, _ts(at)) for fp, at in rows}
        if len(stored) != last:
            last, last_change = len(stored), time.monotonic()
        done = len(stored) >= expected and unpublished == 0
        if done or time.monotonic() - last_change > quiet_s or time.monotonic() > deadline:
            return stored, incidents, hosts
        await asyncio.sleep(0.5)


async def announced_keys(db_url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        rows = await (await conn.execute(ANNOUNCED)).fetchall()
    return {key for (key,) in rows}


async def wait_for_events(probe: EventProbe, db_url: str, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await announced_keys(db_url) <= probe.opened:
            return
        await asyncio.sleep(0.5)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drills", nargs="*", help=f"default: all of {', '.join(DRILLS)}")
    parser.add_argument("--short", action="store_true", help="a 4-second stream instead of 20 seconds")
    args = parser.parse_args()
    if unknown := set(args.drills) - set(DRILLS):
        parser.error(f"no such drill: {', '.join(sorted(unknown))}")
    failed = False
    for name in args.drills or list(DRILLS):
        print(f"chaos: {name}", file=sys.stderr, flush=True)
        result = asyncio.run(run_drill(DRILLS[name], seconds=4 if args.short else 20))
        print(json.dumps(asdict(result)), flush=True)
        failed |= result.lost > 0 or result.duplicated_incidents > 0 or result.lost_events > 0
        failed |= result.hostile is not None and result.hostile["held"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
