"""HTTP handlers: authenticate, read a bounded body, validate, publish with confirms, then answer.

The order of checks is fixed so answers are predictable: 401 before anything is read, then 415, 413,
400/422; a 2xx only after the broker confirmed every message of the request, and 503 (which Alertmanager
retries) when it did not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field, TypeAdapter, ValidationError

from services.ingest.auth import SenderTokens
from services.ingest.metrics import ALERTS_ACCEPTED, PUBLISH_SECONDS, REJECTS, REQUESTS, VALUES_ADJUSTED
from services.ingest.openapi import EVENTS_PATH, WEBHOOK_PATH
from services.ingest.problems import nul_problem
from services.ingest.translate import (
    event_publication,
    nul_character_fields,
    webhook_items,
)
from shared.alert_limits import DEFAULT_LIMITS, AlertLimits, adjustment_kinds
from shared.contracts import AlertAdjustments, AlertmanagerWebhook, GenericEvent, utcnow
from shared.messaging import BrokerUnavailable, JsonMessage
from shared.problems import problem, validation_problem

log = logging.getLogger(__name__)

# Seconds a sender should wait after a 503; RabbitMQ restarts in about this time.
RETRY_AFTER_S = 5
# `\u0000` escapes are the only way a NUL reaches a JSON string; the raw check skips the walk for most bodies.
NUL_ESCAPE = b"\\u0000"

Publish = Callable[[list[JsonMessage]], Awaitable[None]]
# A notification's encoded alerts (`webhook_items`), published alone or with others (coalesce.py).
PublishNotification = Callable[[list[bytes], datetime], Awaitable[None]]

# How many is up to the limit of alerts per request, checked after parsing: a 413 like a webhook's.
EVENT_LIST = TypeAdapter(Annotated[list[GenericEvent], Field(min_length=1)])


class Refused(Exception):
    """A request answered with a 4xx; carries the status, the metric's reason and the JSON body."""

    def __init__(self, status: int, reason: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("message", reason))
        self.status, self.reason, self.body, self.headers = status, reason, body, headers or {}


@dataclass(frozen=True)
class Ingest:
    tokens: SenderTokens
    max_body_bytes: int
    publish: Publish
    publish_notification: PublishNotification
    limits: AlertLimits = DEFAULT_LIMITS
    max_alerts: int = 1000

    async def webhook(self, request: web.Request) -> web.Response:
        sender = self._authenticate(request)
        body = await self._read_json_body(request)
        try:
            webhook = AlertmanagerWebhook.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid(exc) from None
        self._refuse_too_many(len(webhook.alerts))
        _refuse_nul(body, webhook)
        received_at = utcnow()
        items, adjusted = webhook_items(webhook, sender, received_at, limits=self.limits)
        return await self._publish(
            self.publish_notification(items, received_at),
            sender,
            "alertmanager",
            alerts=len(webhook.alerts),
            adjusted=adjusted,
        )

    async def events(self, request: web.Request) -> web.Response:
        sender = self._authenticate(request)
        body = await self._read_json_body(request)
        try:
            if body.lstrip()[:1] == b"[":
                events = EVENT_LIST.validate_json(body)
            else:
                events = [GenericEvent.model_validate_json(body)]
        except ValidationError as exc:
            raise _invalid(exc) from None
        self._refuse_too_many(len(events))
        _refuse_nul(body, events)
        received_at = utcnow()
        publications = [event_publication(event, sender, received_at, self.limits) for event in events]
        received = [p.envelope.data for p in publications]
        return await self._publish(
            self.publish([p.encoded() for p in publications]),
            sender,
            "event",
            alerts=len(publications),
            adjusted=[r.adjusted for r in received if r.adjusted is not None],
            fingerprints=[r.alert.fingerprint for r in received],
        )

    def _refuse_too_many(self, count: int) -> None:
        if count <= self.max_alerts:
            return
        message = (
            f"{count} alerts in one request; at most {self.max_alerts} (VIGIL_INGEST_MAX_ALERTS) are taken: set "
            f"Alertmanager's webhook_config max_alerts to {self.max_alerts} or less"
        )
        errors = [{"field": "alerts", "message": message, "type": "too_many_alerts"}]
        raise Refused(413, "too_many_alerts", problem(413, "too_many_alerts", message, errors))

    def _authenticate(self, request: web.Request) -> str:
        sender = self.tokens.sender(request.headers.get("Authorization"))
        if sender is not None:
            return sender
        message = (
            "no sender tokens are configured (VIGIL_INGEST_TOKEN / VIGIL_INGEST_TOKENS): every request is refused"
            if not self.tokens
            else "missing or unknown token: send Authorization: Bearer <token>"
        )
        raise Refused(
            401,
            "unauthorized",
            problem(401, "unauthorized", message),
            {"WWW-Authenticate": 'Bearer realm="vigil-ingest", Basic realm="vigil-ingest"'},
        )

    async def _read_json_body(self, request: web.Request) -> bytes:
        mimetype = request.content_type if "Content-Type" in request.headers else ""
        if mimetype != "application/json" and not mimetype.endswith("+json"):
            message = f"Content-Type must be application/json, not {mimetype or 'missing'}"
            raise Refused(415, "unsupported_media_type", problem(415, "unsupported_media_type", message))
        too_large = Refused(
            413,
            "body_too_large",
            problem(413, "body_too_large", f"the body is larger than {self.max_body_bytes} bytes"),
        )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            # Counted as it arrives (after any Content-Encoding is undone), so a small compressed body
            # cannot expand past the limit in memory.
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise too_large
                chunks.append(chunk)
        except (HttpProcessingError, web.RequestPayloadError) as exc:
            message = f"unreadable body: {exc}".strip()
            raise Refused(400, "bad_request", problem(400, "bad_request", message)) from None
        return b"".join(chunks)

    async def _publish(
        self,
        publishing: Awaitable[None],
        sender: str,
        source: str,
        *,
        alerts: int,
        adjusted: list[AlertAdjustments],
        fingerprints: list[str] | None = None,
    ) -> web.Response:
        started = time.perf_counter()
        try:
            await publishing
        except BrokerUnavailable as exc:
            log.warning("publish failed, answering 503", extra={"error": str(exc), "alerts": alerts})
            body = problem(503, "broker_unavailable", f"alerts not stored, retry later: {exc}")
            return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        for adjustments in adjusted:
            for kind, n in adjustment_kinds(adjustments).items():
                VALUES_ADJUSTED.labels(kind).inc(n)
        ALERTS_ACCEPTED.labels(sender, source).inc(alerts)
        answer: dict[str, Any] = {"status": "accepted", "accepted": alerts, "sender": sender}
        if fingerprints is not None:
            answer["fingerprints"] = fingerprints
        return web.json_response(answer)


def _invalid(exc: ValidationError) -> Refused:
    status, body = validation_problem(exc)
    return Refused(status, body["error"], body)


def _refuse_nul(body: bytes, parsed: object) -> None:
    if NUL_ESCAPE not in body:
        return
    fields = list(nul_character_fields(parsed))
    if fields:
        status, answer = nul_problem(fields)
        raise Refused(status, "invalid_payload", answer)


ENDPOINTS = {WEBHOOK_PATH: "alertmanager", EVENTS_PATH: "events"}
HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed"}


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every refusal is JSON, counted, and never a 500 for what a client sent."""
    endpoint = ENDPOINTS.get(request.path)
    try:
        response = await handler(request)
    except Refused as exc:
        REJECTS.labels(exc.reason).inc()
        response = web.json_response(exc.body, status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = HTTP_ERRORS.get(exc.status, "bad_request" if exc.status < 500 else "internal_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = web.json_response(problem(exc.status, error, exc.reason), status=exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        response = web.json_response(problem(500, "internal_error", "internal error, see the logs"), status=500)
    if endpoint is not None:
        REQUESTS.labels(endpoint, str(response.status)).inc()
    return response
