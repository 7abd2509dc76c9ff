"""The HTTP server every service runs: aiohttp's, with a deadline for receiving each request and JSON answers to
requests too malformed to parse.

aiohttp has no read timeout for a request being received: its keep-alive timer only runs while a connection is idle,
so a client that sends its headers (or its body) a byte a second holds the connection, and a task, for as long as
it likes; a few hundred such clients exhaust a service (slowloris). Its own answer is "put a reverse proxy in
front"; ingest and the web face clients directly, so each connection here gets a deadline: from the first byte of
a request until its headers and body are in, at most `read_timeout_s`, or the connection is closed (what nginx
does with client_header_timeout). The time a handler leaves a body unread is not the client's fault: while the
server holds reading back, the deadline waits. Once a request is in, the deadline is off: a slow handler or a
long response (the web's live stream) is not cut.

It hooks into aiohttp's RequestHandler (the protocol of one connection) where no public hook exists: the request
count, the message queue and the reading-paused flags. tests/web/test_web_hardening.py exercises each path, so an
aiohttp upgrade that moves them fails there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter

from shared.problems import problem

log = logging.getLogger(__name__)

TIMED_OUT = Counter(
    "vigil_http_requests_timed_out_total",
    "Connections closed because a request's headers and body did not arrive within the read timeout",
)
# aiohttp's default for web.run_app, which the services used before: an idle keep-alive connection is closed after it.
KEEPALIVE_TIMEOUT_S = 75.0
SHUTDOWN_TIMEOUT_S = 30.0


class DeadlineRequestHandler(RequestHandler):
    """One connection: each request must arrive whole within `read_timeout_s` of its first byte."""

    __slots__ = ("_body", "_deadline", "_read_timeout_s")

    def __init__(self, manager: web.Server, *, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_timeout_s = read_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # the body of the newest request, until it is complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A connection that never sends a byte is a request that never arrives.
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._deadline is None:
            self._arm()  # the first bytes of a request
        body_was_open = self._body is not None and not self._body.is_eof()
        parsed = self._request_count
        super().data_received(data)
        if self._upgraded:
            self._disarm()  # no longer HTTP requests: the handler of the upgrade owns the connection
        elif self._request_count != parsed and self._messages:
            self._body = self._messages[-1][1]
            if self._body.is_eof():
                self._disarm()  # in whole; the next request's clock starts with its first byte
        elif body_was_open and self._body is not None and self._body.is_eof():
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(self._read_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._reading_paused or self._buffer_paused:
            # The server holds reading back (a handler has not read the body yet): give the client its time again.
            self._arm()
            return
        TIMED_OUT.inc()
        log.debug("closed a connection: request not received in time", extra={"timeout_s": self._read_timeout_s})
        if self._body is not None and not self._body.is_eof():
            # A handler waiting for this body gets the error aiohttp raises for a broken body, which handlers answer
            # as the client's fault (ingest: a 400 reject), not the lost connection they would report as their own.
            self._body.set_exception(
                RequestPayloadError(f"the request did not arrive within {self._read_timeout_s:g} s")
            )
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (a control byte in a header, a bad request line) gets the JSON problem
        every Vigil API answers with, not a text page and a traceback in the log for each one a scanner sends.

        A handler that failed because its connection is gone (closed for a slow request, or by the client) has
        nobody to answer and no bug to report: no traceback either."""
        if isinstance(exc, ConnectionResetError | RequestPayloadError) and self.transport is None:
            log.debug("the connection was lost while a request was handled", extra={"peer": request.remote})
            return web.Response(status=status)
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # aiohttp's message goes on to quote the offending bytes: its first line is enough, and echoes nothing.
        lines = (message or "").strip().splitlines()
        reason = lines[0].rstrip(":") if lines else "unparsable request"
        log.debug("refused a malformed request", extra={"status": status, "reason": reason, "peer": request.remote})
        response = web.json_response(problem(status, "bad_request", f"malformed request: {reason}"), status=status)
        response.force_close()
        return response


class DeadlineServer(web.Server):
    def __init__(self, *args: Any, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout_s = read_timeout_s

    def __call__(self) -> RequestHandler:
        return DeadlineRequestHandler(self, loop=self._loop, read_timeout_s=self.read_timeout_s, **self._kwargs)


class DeadlineAppRunner(web.AppRunner):
    """web.AppRunner whose connections are `DeadlineRequestHandler`s."""

    def __init__(self, app: web.Application, *, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.read_timeout_s = read_timeout_s

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return DeadlineServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            read_timeout_s=self.read_timeout_s,
            **plain._kwargs,
        )


def app_runner(app: web.Application, read_timeout_s: float) -> DeadlineAppRunner:
    """The runner `shared.service.run` serves an app with (and tests, to serve it the same way)."""
    return DeadlineAppRunner(
        app,
        read_timeout_s=read_timeout_s,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
