"""The load generator's sender posts webhooks as Alertmanager does, over kept-alive connections: accepted (2xx),
refused (4xx, never sent again), or retried with backoff (5xx, no answer). Checked against a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from devstack.alertstorm import WebhookSender
from devstack.keepalive_post import KeepAlivePost, parse_head
from devstack.procs import free_port
from tests.conftest import running

PATH = "/api/v1/webhooks/alertmanager"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Ingest:
    """Answers with the statuses queued in `answers` (then 202), and records each request's body and connection."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.bodies: list[bytes] = []
        self.connections: list[int] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.connections.append(id(request.transport))
        self.headers.append(dict(request.headers))
        status = self.answers.pop(0) if self.answers else 202
        return web.json_response({"status": status}, status=status)


def webhook_app(handler: Handler) -> web.Application:
    app = web.Application()
    app.router.add_post(PATH, handler)
    return app


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[Ingest, str]]:
    server = Ingest()
    async with running(webhook_app(server.handle), free_port()) as base:
        yield server, base + PATH


async def test_webhooks_go_over_one_kept_alive_connection_with_the_token(ingest: tuple[Ingest, str]) -> None:
    server, url = ingest
    sender = WebhookSender(url, "sender-token-0001")
    try:
        assert await sender.send(b'{"n": 1}')
        assert await sender.send({"n": 2})
    finally:
        await sender.aclose()
    assert server.bodies == [b'{"n": 1}', b'{"n": 2}']
    assert len(set(server.connections)) == 1
    assert server.headers[0]["Authorization"] == "Bearer sender-token-0001"
    assert server.headers[0]["Content-Type"] == "application/json"
    assert (sender.retries, sender.unavailable_at, len(sender.latencies_ms)) == (0, set(), 2)


async def test_a_refused_webhook_is_not_sent_again(ingest: tuple[Ingest, str]) -> None:
    server, url = ingest
    server.answers = [400]
    sender = WebhookSender(url, "sender-token-0001")
    try:
        assert not await sender.send(b"{}")
    finally:
        await sender.aclose()
    assert (len(server.bodies), sender.retries) == (1, 0)


async def test_an_unavailable_ingest_is_retried_and_counted(ingest: tuple[Ingest, str]) -> None:
    server, url = ingest
    server.answers = [503, 500]
    sender = WebhookSender(url, "sender-token-0001")
    try:
        assert await sender.send(b"{}")
    finally:
        await sender.aclose()
    assert (len(server.bodies), sender.retries) == (3, 2)
    assert sender.unavailable_at


async def test_no_server_at_all_is_given_up_after_give_up_s() -> None:
    sender = WebhookSender(f"http://127.0.0.1:{free_port()}/api/v1/webhooks/alertmanager", "t", give_up_s=0.3)
    try:
        assert not await sender.send(b"{}")
    finally:
        await sender.aclose()
    assert sender.retries >= 1
    assert sender.unavailable_at


async def test_a_connection_the_server_closed_while_idle_is_no_failure() -> None:
    server = Ingest()
    async with running(webhook_app(server.handle), free_port(), keepalive_timeout=0.1) as base:
        sender = WebhookSender(base + PATH, "sender-token-0001")
        try:
            assert await sender.send(b'{"n": 1}')
            await asyncio.sleep(0.5)  # the server closes the kept-alive connection meanwhile
            assert await sender.send(b'{"n": 2}')
        finally:
            await sender.aclose()
    assert len(server.bodies) == 2
    assert len(set(server.connections)) == 2
    assert (sender.retries, sender.unavailable_at) == (0, set())


async def test_a_slow_answer_times_out_and_the_next_post_gets_a_fresh_connection() -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(id(request.transport))
        if len(seen) == 1:
            await gate.wait()
        return web.json_response({}, status=202)

    async with running(webhook_app(handle), free_port()) as base:
        client = KeepAlivePost(base + PATH, {})
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.post(b"{}")
            assert await client.post(b"{}") == 202
        finally:
            gate.set()
            await client.aclose()
    assert len(seen) == 2 and seen[0] != seen[1]


async def test_an_answer_the_client_cannot_read_is_an_error_not_an_outage() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=202)
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"{}")
        await response.write_eof()
        return response

    async with running(webhook_app(chunked), free_port()) as base:
        sender = WebhookSender(base + PATH, "t")
        try:
            with pytest.raises(ValueError, match="Transfer-Encoding"):
                await sender.send(b"{}")
        finally:
            await sender.aclose()
    assert (sender.retries, sender.unavailable_at) == (0, set())


def test_answer_heads_are_read_strictly() -> None:
    assert parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 17\r\nContent-Type: application/json\r\n\r\n") == (
        202,
        17,
        False,
    )
    assert parse_head(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n") == (
        503,
        0,
        True,
    )
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n")[2]  # HTTP/1.0 closes unless told otherwise
    with pytest.raises(ValueError, match="Transfer-Encoding"):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(ValueError, match="without Content-Length"):
        parse_head(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n")
    with pytest.raises(ValueError, match="status line"):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")
