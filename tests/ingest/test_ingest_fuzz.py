"""Property-based: whatever a client sends, ingest answers with JSON and never with a 5xx.

Ingest runs in a thread of its own (its own event loop) against the session broker, so hypothesis can
drive it with plain synchronous requests, many examples per test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.procs import free_port
from devstack.rabbitmq import RabbitMQ
from services.ingest.app import build_app
from shared.config import Settings
from tests.conftest import running
from tests.ingest.webhooks import EVENTS, WEBHOOK, am_alert, notification

TOKEN = "fuzz-sender-token-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ingest_url(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    vhost = f"fuzz_{uuid.uuid4().hex[:8]}"
    amqp_url = rabbitmq.add_vhost(vhost)
    config = Settings(
        amqp_url=amqp_url,
        state_dir=Path(tmp_path_factory.mktemp("fuzz")),
        ingest_port=free_port(),
        ingest_token=TOKEN,
        ingest_max_body_bytes=64 * 1024,
    )
    started = threading.Event()
    stop: asyncio.Event | None = None
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with running(build_app(config), config.ingest_port):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30)
    url = f"http://127.0.0.1:{config.ingest_port}"
    with httpx.Client() as client:
        for _ in range(300):
            if client.get(url + "/readyz").status_code == 200:
                break
            threading.Event().wait(0.05)
    try:
        yield url
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        rabbitmq.delete_vhost(vhost)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    if response.status_code >= 400:
        assert body["status"] == response.status_code and body["error"] and body["message"]
    if response.status_code in (400, 422):
        assert all(isinstance(e["field"], str) for e in body["errors"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(body=st.binary(max_size=2048), path=st.sampled_from([WEBHOOK, EVENTS]))
def test_random_bytes_never_5xx(ingest_url: str, client: httpx.Client, body: bytes, path: str) -> None:
    check(client.post(ingest_url + path, content=body, headers=AUTH))


@FUZZ
@given(value=json_values, path=st.sampled_from([WEBHOOK, EVENTS]))
def test_random_json_never_5xx(ingest_url: str, client: httpx.Client, value: Any, path: str) -> None:
    check(client.post(ingest_url + path, content=json.dumps(value).encode(), headers=AUTH))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_webhooks(draw: st.DrawFn) -> dict[str, Any]:
    """A valid notification with one to three fields replaced by random JSON or removed."""
    alerts = [am_alert(draw(st.text(min_size=1, max_size=300))) for _ in range(draw(st.integers(1, 3)))]
    body = notification(*alerts)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return body


@FUZZ
@given(body=mutated_webhooks())
def test_mutated_notifications_never_5xx(ingest_url: str, client: httpx.Client, body: dict[str, Any]) -> None:
    check(client.post(ingest_url + WEBHOOK, content=json.dumps(body).encode(), headers=AUTH))


@FUZZ
@given(
    labels=st.dictionaries(st.text(max_size=50), st.text(max_size=300), max_size=8),
    alertname=st.text(max_size=300),
    severity=st.text(max_size=300),
)
def test_any_label_text_is_accepted_or_named(
    ingest_url: str, client: httpx.Client, labels: dict[str, str], alertname: str, severity: str
) -> None:
    # Unicode of every plane, long names (routing keys are capped at 255 bytes), NUL characters, surrogates.
    alert = am_alert() | {"labels": {**labels, "alertname": alertname, "severity": severity}}
    response = client.post(ingest_url + WEBHOOK, content=json.dumps(notification(alert)).encode(), headers=AUTH)
    check(response)
    text = json.dumps(alert["labels"])
    if "\\u0000" not in text and not any(
        0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(alert["labels"], ensure_ascii=False)
    ):
        assert response.status_code == 200, response.text


@FUZZ
@given(
    authorization=st.one_of(
        # Header values as HTTP allows them (visible Latin-1 and spaces); others are refused by the HTTP parser.
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=100),
        st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "", "*/*"]),
)
def test_random_credentials_and_content_types_never_5xx(
    ingest_url: str, client: httpx.Client, authorization: str, content_type: str
) -> None:
    # The client refuses values with edge whitespace; the server never sees them, so neither do we.
    headers = {"Content-Type": content_type, "Authorization": authorization.strip().encode("latin-1") or b"x"}
    response = client.post(ingest_url + EVENTS, content=b'{"source":"s","host":"h","kind":"k"}', headers=headers)
    check(response)
    assert response.status_code == 401


@FUZZ
@given(
    event=st.fixed_dictionaries(
        {
            "source": st.text(max_size=210),
            "host": st.text(max_size=260),
            "kind": st.text(max_size=210),
        },
        optional={
            "severity": st.sampled_from(["critical", "error", "warning", "info", "none", "CRITICAL", ""]),
            "status": st.sampled_from(["firing", "resolved", "pending"]),
            "labels": st.dictionaries(st.text(max_size=20), st.text(max_size=50) | st.integers(), max_size=5),
            "message": st.text(max_size=200),
            "time": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.text(max_size=30),
            "ends_at": st.none() | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        },
    ),
    as_array=st.booleans(),
)
def test_any_event_is_accepted_or_named(
    ingest_url: str, client: httpx.Client, event: dict[str, Any], as_array: bool
) -> None:
    body = json.dumps([event] if as_array else event).encode()
    response = client.post(ingest_url + EVENTS, content=body, headers=AUTH)
    check(response)
    if response.status_code == 200:
        assert response.json()["accepted"] == 1 and len(response.json()["fingerprints"]) == 1
