"""The project's own Loki stand-in answers query_range like Loki: format, matchers, filters, range, limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devstack.fakeloki import create_app, go_unquote
from devstack.procs import free_port
from services.enricher.logql import line_filter, stream_selector
from tests.conftest import running

S = 1_000_000_000
T0 = 1_800_000_000 * S  # a whole second, far from "now"


@pytest.fixture
async def loki() -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(), free_port()) as url, httpx.AsyncClient(base_url=url) as client:
        streams = [
            {
                "stream": {"host": "web-1", "job": "varlogs"},
                "values": [[str(T0 + i * S), f"line {i}"] for i in range(10)],
            },
            {"stream": {"host": "web-2", "job": "varlogs"}, "values": [[str(T0 + 5 * S), "ERROR disk full"]]},
            {"stream": {"host": 'we"b\\3', "job": "varlogs"}, "values": [[str(T0 + 6 * S), "odd host"]]},
            {
                "stream": {"host": "web-1", "job": "fail2ban"},
                "values": [
                    [str(T0 + 61 * S), "2026-01-01 00:00:00,000 fail2ban.actions [1]: NOTICE  [sshd] Ban 203.0.113.7"],
                    [str(T0 + 62 * S), "error one"],
                    [str(T0 + 63 * S), "error two"],
                ],
            },
        ]
        response = await client.post("/loki/api/v1/push", json={"streams": streams})
        assert response.status_code == 204
        yield client


async def query(client: httpx.AsyncClient, q: str, **params: object) -> httpx.Response:
    params.setdefault("start", str(T0))
    params.setdefault("end", str(T0 + 3600 * S))
    return await client.get("/loki/api/v1/query_range", params={"query": q, **params})


async def test_streams_in_lokis_format_newest_first(loki: httpx.AsyncClient) -> None:
    response = await query(loki, '{host="web-1", job="varlogs"}', limit=3)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "streams"
    assert body["data"]["result"] == [
        {
            "stream": {"host": "web-1", "job": "varlogs"},
            "values": [[str(T0 + 9 * S), "line 9"], [str(T0 + 8 * S), "line 8"], [str(T0 + 7 * S), "line 7"]],
        }
    ]
    forward = (await query(loki, '{host="web-1", job="varlogs"}', limit=2, direction="forward")).json()
    assert forward["data"]["result"][0]["values"] == [[str(T0), "line 0"], [str(T0 + S), "line 1"]]


async def test_time_range_is_start_inclusive_end_exclusive(loki: httpx.AsyncClient) -> None:
    body = (await query(loki, '{job="varlogs", host="web-1"}', start=str(T0 + 2 * S), end=str(T0 + 4 * S))).json()
    assert [v[1] for v in body["data"]["result"][0]["values"]] == ["line 3", "line 2"]
    rfc = (
        await query(loki, '{host="web-1", job="varlogs"}', start="2027-01-15T08:00:02Z", end="2027-01-15T08:00:04Z")
    ).json()
    assert [v[1] for v in rfc["data"]["result"][0]["values"]] == ["line 3", "line 2"]


async def test_matchers_and_line_filters(loki: httpx.AsyncClient) -> None:
    regex = (await query(loki, '{host=~"web-[12]", job!="fail2ban"} |~ "(?i)error"')).json()
    assert [(r["stream"]["host"], [v[1] for v in r["values"]]) for r in regex["data"]["result"]] == [
        ("web-2", ["ERROR disk full"])
    ]
    negated = (await query(loki, '{host!~"web-.*", job="varlogs"}')).json()
    assert [r["stream"]["host"] for r in negated["data"]["result"]] == ['we"b\\3']
    contains = (await query(loki, '{job="fail2ban"} |= "error" != "two"')).json()
    assert [v[1] for v in contains["data"]["result"][0]["values"]] == ["error one"]


async def test_regex_matchers_are_anchored(loki: httpx.AsyncClient) -> None:
    body = (await query(loki, '{host=~"web"}')).json()
    assert body["data"]["result"] == []


async def test_escaped_label_value_selects_exactly_that_stream(loki: httpx.AsyncClient) -> None:
    selector = stream_selector([("host", "=", 'we"b\\3')])
    assert go_unquote('"we\\"b\\\\3"') == 'we"b\\3'
    body = (await query(loki, selector)).json()
    assert [(r["stream"]["host"], r["values"][0][1]) for r in body["data"]["result"]] == [('we"b\\3', "odd host")]
    injected = stream_selector([("host", "=", 'web-1"} or {job="fail2ban')])
    assert (await query(loki, injected)).json()["data"]["result"] == []
    filtered = (await query(loki, '{job="varlogs"} ' + line_filter("|=", 'x" |= "'))).json()
    assert filtered["data"]["result"] == []


async def test_count_over_time_matrix(loki: httpx.AsyncClient) -> None:
    q = 'sum by (host) (count_over_time({job="fail2ban"} |~ "error" [1m]))'
    body = (await query(loki, q, start=str(T0 + 60 * S), end=str(T0 + 180 * S), step="60s")).json()
    assert body["data"]["resultType"] == "matrix"
    # The sample at T0+120s counts the lines in (T0+60s, T0+120s]: both errors.
    assert body["data"]["result"] == [{"metric": {"host": "web-1"}, "values": [[T0 // S + 120, "2"]]}]
    plain = (
        await query(loki, 'count_over_time({host="web-2"}[1m])', start=str(T0), end=str(T0 + 60 * S), step="30")
    ).json()
    assert plain["data"]["result"] == [
        {"metric": {"host": "web-2", "job": "varlogs"}, "values": [[T0 // S + 30, "1"], [T0 // S + 60, "1"]]}
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "{host=web-1}",
        '{host="web-1"',
        '{host=~".*"}',
        '{host="a"} |= unquoted',
        '{host=~"("}',
        'max(count_over_time({host="a"}[1m]))',
        '{host="a"} or vector(1)',
    ],
)
async def test_invalid_logql_is_400(loki: httpx.AsyncClient, bad: str) -> None:
    response = await query(loki, bad)
    assert response.status_code == 400, response.text


async def test_limit_above_maximum_is_400_and_ready_answers(loki: httpx.AsyncClient) -> None:
    assert (await query(loki, '{host="web-1"}', limit=5001)).status_code == 400
    assert (await loki.get("/ready")).status_code == 200


async def test_metric_query_with_more_series_than_max_query_series_is_400() -> None:
    """As Loki's limits_config.max_query_series: the whole answer is refused, not cut; log queries are untouched."""
    async with running(create_app(max_query_series=2), free_port()) as url, httpx.AsyncClient(base_url=url) as client:
        values = [[str(T0 + S), "error"]]
        streams = [{"stream": {"host": f"web-{i}", "job": "varlogs"}, "values": values} for i in range(3)]
        assert (await client.post("/loki/api/v1/push", json={"streams": streams})).status_code == 204
        q = 'sum by (host) (count_over_time({job="varlogs"}[1m]))'
        refused = await query(client, q, step="60s")
        assert refused.status_code == 400
        assert refused.text.startswith("maximum number of series (2) reached for a single query")
        summed = (await query(client, 'sum(count_over_time({job="varlogs"}[1m]))', step="60s")).json()
        assert len(summed["data"]["result"]) == 1
        logs = (await query(client, '{job="varlogs"}', limit=2)).json()
        assert sum(len(r["values"]) for r in logs["data"]["result"]) == 2
