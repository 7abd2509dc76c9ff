"""HTTP clients of Prometheus and Loki: timeouts, retries with backoff, a circuit breaker and a concurrency cap
per upstream, and the parsing of their `query_range` answers into plain data."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter

from services.enricher.breaker import CircuitBreaker
from services.enricher.config import UpstreamConfig
from services.enricher.promql import prometheus_duration

UPSTREAM_ERRORS = Counter("vigil_upstream_errors_total", "Failed requests to an upstream, after retries", ["upstream"])
MAX_ERROR_CHARS = 300


class UpstreamError(Exception):
    """A query that got no usable answer; the message says why, for `missing`."""


class BudgetExhaustedError(UpstreamError):
    """The incident's time budget for this upstream ran out before the query could go (again)."""


class QueryRejectedError(UpstreamError):
    """The upstream answered but refused the query (4xx): it is up, the query is wrong; never retried."""


Series = tuple[dict[str, str], list[tuple[float, float]]]
Stream = tuple[dict[str, str], list[tuple[int, str]]]


@dataclass
class Upstream:
    """One upstream's HTTP client with its fault handling; shared by every incident being enriched."""

    name: str
    base_url: str
    config: UpstreamConfig
    client: httpx.AsyncClient
    breaker: CircuitBreaker
    semaphore: asyncio.Semaphore

    @classmethod
    def create(cls, name: str, base_url: str, config: UpstreamConfig) -> Upstream:
        timeout = config.timeout.total_seconds()
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=config.concurrency * 2),
            headers={"User-Agent": "vigil-enricher"},
        )
        breaker = CircuitBreaker(name, config.breaker_failures, config.breaker_cooldown.total_seconds())
        return cls(name, base_url.rstrip("/"), config, client, breaker, asyncio.Semaphore(config.concurrency))

    async def close(self) -> None:
        await self.client.aclose()

    async def get_json(self, method: str, path: str, params: dict[str, str], deadline: float) -> dict[str, Any]:
        """The decoded JSON answer, retried with backoff on timeouts, connection errors, 5xx and 429."""
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BudgetExhaustedError("time budget for this incident used up")
            self.breaker.before_call()  # raises CircuitOpenError: no point retrying
            verdict = False
            try:
                async with self.semaphore:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BudgetExhaustedError("time budget for this incident used up")
                    timeout = min(self.config.timeout.total_seconds(), remaining)
                    status, raw = await self._fetch(method, path, params, timeout)
                if status >= 500 or status == 429:
                    raise UpstreamError(f"HTTP {status}: {_error_text(raw)}")
                self.breaker.succeeded()
                verdict = True
                if status >= 400:
                    raise QueryRejectedError(f"query refused (HTTP {status}): {_error_text(raw)}")
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise QueryRejectedError(f"answer is not JSON: {exc}") from None
                if not isinstance(body, dict) or body.get("status") != "success":
                    raise QueryRejectedError(f"query failed: {_error_text(raw)}")
                return body
            except (TimeoutError, httpx.HTTPError, UpstreamError) as exc:
                if isinstance(exc, QueryRejectedError | BudgetExhaustedError):
                    raise
                reason = _describe(exc, self.config)
                self.breaker.failed()
                verdict = True
                if attempt >= self.config.attempts:
                    UPSTREAM_ERRORS.labels(self.name).inc()
                    raise UpstreamError(f"{reason} (after {attempt} attempt{'s' if attempt > 1 else ''})") from None
                pause = self.config.backoff.total_seconds() * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
                if time.monotonic() + pause >= deadline:
                    UPSTREAM_ERRORS.labels(self.name).inc()
                    raise UpstreamError(f"{reason}; no time left to retry") from None
                await asyncio.sleep(pause)
            finally:
                if not verdict:
                    self.breaker.abandoned()

    async def _fetch(self, method: str, path: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]:
        """Status and body, within `timeout` in all (httpx's own timeouts are per read) and `max_response_bytes`."""
        async with asyncio.timeout(timeout):
            async with self.client.stream(
                method,
                self.base_url + path,
                params=params if method == "GET" else None,
                data=params if method == "POST" else None,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            ) as response:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.config.max_response_bytes:
                        raise QueryRejectedError(
                            f"answer larger than {self.config.max_response_bytes} bytes; narrow the query"
                        )
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)


def _describe(exc: Exception, config: UpstreamConfig) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {config.timeout.total_seconds():g}s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"[:MAX_ERROR_CHARS]
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error: {type(exc).__name__} {exc}"[:MAX_ERROR_CHARS]
    return str(exc)[:MAX_ERROR_CHARS]


def _error_text(raw: bytes) -> str:
    """Prometheus puts the reason in JSON `error`; Loki answers plain text."""
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])[:MAX_ERROR_CHARS]
    except ValueError:
        pass
    return raw[:MAX_ERROR_CHARS].decode(errors="replace").strip() or "no reason given"


# --- Prometheus ----------------------------------------------------------------------------------


async def prometheus_range(
    upstream: Upstream, query: str, start: datetime, end: datetime, step_s: int, deadline: float, *, max_series: int
) -> list[Series]:
    """Prometheus stops evaluating at `timeout` (its own -query.timeout caps it) rather than working on after we
    gave up, and returns at most `limit` series (versions before the parameter ignore it; the answer is then
    bounded by max_response_bytes alone)."""
    # POST: a long expression would not fit in a URL; Prometheus takes form-encoded parameters alike.
    body = await upstream.get_json(
        "POST",
        "/api/v1/query_range",
        {
            "query": query,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step_s}s",
            "timeout": prometheus_duration(upstream.config.timeout),
            "limit": str(max_series),
        },
        deadline,
    )
    return parse_matrix(body)


async def prometheus_instant(
    upstream: Upstream, query: str, at: datetime, deadline: float, *, max_series: int
) -> list[Series]:
    """One evaluation at `at`, bounded like `prometheus_range`; each series with its single point."""
    body = await upstream.get_json(
        "POST",
        "/api/v1/query",
        {
            "query": query,
            "time": f"{at.timestamp():.3f}",
            "timeout": prometheus_duration(upstream.config.timeout),
            "limit": str(max_series),
        },
        deadline,
    )
    return parse_vector(body)


def parse_vector(body: dict[str, Any]) -> list[Series]:
    """`{"data": {"resultType": "vector", "result": [{"metric": {...}, "value": [t, "v"]}]}}`."""
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise QueryRejectedError(f"expected a vector, got {data.get('resultType')!r}")
    series: list[Series] = []
    for item in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        t, v = item.get("value") or (math.nan, "NaN")
        series.append((labels, [(float(t), float(v))]))
    return series


def parse_matrix(body: dict[str, Any]) -> list[Series]:
    """`{"data": {"resultType": "matrix", "result": [{"metric": {...}, "values": [[t, "v"], ...]}]}}`."""
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise QueryRejectedError(f"expected a matrix, got {data.get('resultType')!r}")
    series: list[Series] = []
    for item in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        points = [(float(t), float(v)) for t, v in item.get("values") or []]
        series.append((labels, points))
    return series


# --- Loki ----------------------------------------------------------------------------------------


async def loki_streams(
    upstream: Upstream, query: str, start: datetime, end: datetime, limit: int, deadline: float
) -> list[Stream]:
    body = await upstream.get_json(
        "GET",
        "/loki/api/v1/query_range",
        {
            "query": query,
            "start": str(_ns(start)),
            "end": str(_ns(end)),
            "limit": str(limit),
            "direction": "backward",
        },
        deadline,
    )
    return parse_streams(body)


async def loki_matrix(
    upstream: Upstream, query: str, start: datetime, end: datetime, step_s: int, deadline: float, *, max_series: int
) -> list[Series]:
    """Loki takes no per-request timeout or series limit (`limit` counts log lines and is ignored for a metric
    query): its limits_config (query_timeout, max_query_series) bounds it, and we refuse more than `max_series`
    series here, as Loki's max_query_series would, rather than sum a part of them."""
    body = await upstream.get_json(
        "GET",
        "/loki/api/v1/query_range",
        {"query": query, "start": str(_ns(start)), "end": str(_ns(end)), "step": f"{step_s}s"},
        deadline,
    )
    result = (body.get("data") or {}).get("result")
    if isinstance(result, list) and len(result) > max_series:
        raise QueryRejectedError(f"{len(result)} series, more than {max_series}; narrow the query")
    return parse_matrix(body)


def parse_streams(body: dict[str, Any]) -> list[Stream]:
    """`{"data": {"resultType": "streams", "result": [{"stream": {...}, "values": [["<ns>", "line"]]}]}}`."""
    data = body.get("data") or {}
    if data.get("resultType") != "streams":
        raise QueryRejectedError(f"expected streams, got {data.get('resultType')!r}")
    streams: list[Stream] = []
    for item in data.get("result") or []:
        labels = {str(k): str(v) for k, v in (item.get("stream") or {}).items()}
        entries = [(int(ts), str(line)) for ts, line, *_ in item.get("values") or []]
        streams.append((labels, entries))
    return streams


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000
