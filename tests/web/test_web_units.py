"""The web's pure parts: list query parsing, charts, presentation, access rules. No I/O."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.web.access import (
    PasswordChecks,
    PasswordChecksBusy,
    Role,
    TokenBook,
    UsersFileError,
    check_password,
    client_address,
    has_control_chars,
    hash_password,
    load_users,
    malformed_header,
    parse_networks,
    safe_next,
)
from services.web.charts import MAX_MARKERS, ChartEvent, render_chart
from services.web.gate import OncePer
from services.web.listing import (
    Cursor,
    QueryError,
    decode_cursor,
    encode_cursor,
    parse_list_query,
    parse_matcher,
    query_string,
    sql_params,
)
from services.web.lockout import Limit, Refusal, Scope, address_key, refusal, retry_after
from services.web.presentation import chart_events, duration, time_tag, timeline_summary, timeline_view
from services.web.xlsx_cache import XlsxCache
from shared.incident_context import IncidentContext
from shared.matchers import Matcher, MatchType
from shared.readmodel.models import TimelineEntry
from shared.secret_values import EXAMPLE_HASHES
from shared.urls import web_link

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def q(**params: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


def test_matchers_follow_alertmanager_syntax() -> None:
    assert parse_matcher('job="node"') == Matcher("job", "=", "node")
    assert parse_matcher('instance=~"web-.*"') == Matcher("instance", "=~", "web-.*")
    assert parse_matcher('env!="prod"') == Matcher("env", "!=", "prod")
    assert parse_matcher(r'msg="say \"hi\""') == Matcher("msg", "=", 'say "hi"')
    assert str(Matcher("msg", MatchType.equal, 'say "hi"')) == r'msg="say \"hi\""'
    # Alertmanager's own forms: a bare value, and several matchers in braces in one parameter.
    assert parse_matcher("job=node") == Matcher("job", "=", "node")
    f = parse_list_query(q(matcher='{job="node",env=~"prod|stage"}'))
    assert [str(m) for m in f.matchers] == ['job="node"', 'env=~"prod|stage"']


@pytest.mark.parametrize("text", ["job", "job=", '1job="x"', 'job=="x"', 'job="x" extra', 'a="x",b="y"'])
def test_malformed_matcher_names_the_field(text: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_matcher(text)
    assert err.value.field == "matcher"


@pytest.mark.parametrize("regex", ["(", "a**", "(?=x)", r"(a)\1", "x" * 600])
def test_unusable_regex_is_refused(regex: str) -> None:
    with pytest.raises(QueryError, match="matcher"):
        parse_matcher(f'job=~"{regex}"')


def test_list_query_parses_every_filter() -> None:
    f = parse_list_query(
        q(
            state="open,acknowledged",
            severity="critical",
            host="web-1",
            alertname="HostDown",
            matcher=['job="node"', 'env=~"prod|stage"'],
            q="disk 100%",
            since="2026-11-01T00:00:00Z",
            until="2026-11-02",
            limit="20",
        )
    )
    assert f.states == ("open", "acknowledged")
    assert f.since == datetime(2026, 11, 1, tzinfo=UTC) and f.until == datetime(2026, 11, 2, tzinfo=UTC)
    params = sql_params(f)
    assert params["states"] == ["open", "acknowledged"]
    # Equality matchers become one indexable JSONB containment; the rest are checked one by one.
    assert params["label_eq"].obj == {"job": "node", "alertname": "HostDown"}
    assert (params["m_names"], params["m_ops"]) == (["env"], ["=~"])
    # LIKE wildcards typed by the user are matched literally.
    assert params["text"] == r"%disk 100\%%"
    assert params["limit"] == 21


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (q(state="closed"), "state"),
        (q(severity="huge"), "severity"),
        (q(limit="0"), "limit"),
        (q(limit="many"), "limit"),
        (q(limit="501"), "limit"),
        (q(since="yesterday"), "since"),
        (q(since="2026-11-02T00:00:00Z", until="2026-11-01T00:00:00Z"), "until"),
        (q(cursor="!!!"), "cursor"),
        (q(host=["a", "b"]), "host"),
        (q(q="x" * 201), "q"),
    ],
)
def test_bad_list_parameters_name_their_field(params: dict[str, list[str]], field: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_list_query(params)
    assert err.value.field == field


def test_conflicting_and_empty_equality_matchers_keep_their_meaning() -> None:
    both = sql_params(parse_list_query(q(matcher=['job="a"', 'job="b"'])))
    assert both["m_values"] == ["a", "b"]  # checked one by one: no alert has two values, nothing matches
    empty = sql_params(parse_list_query(q(matcher=['team=""'])))
    assert empty["label_eq"] is None and empty["m_values"] == [""]  # matches alerts without the label


def test_cursor_round_trips() -> None:
    cursor = Cursor(T0, 12345)
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_query_string_keeps_filters_and_replaces_one() -> None:
    f = parse_list_query(q(severity="critical", matcher='job="node"', state="open"))
    assert "state=resolved" in query_string(f, state="resolved")
    assert "state=open" not in query_string(f, state="resolved")
    assert "matcher=job%3D%22node%22" in query_string(f)
    assert "state" not in query_string(f, state=None)


def test_chart_marks_alert_starts_and_escapes_text() -> None:
    points = [(T0 + timedelta(minutes=i), float(i % 7)) for i in range(60)]
    svg = str(render_chart("<script>cpu</script>", points, [T0 + timedelta(minutes=30)], unit="%"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<script>" not in svg and "&lt;script&gt;cpu" in svg
    assert svg.count('class="alert-start"') == 1
    assert "polyline" in svg


def test_chart_caps_markers_and_handles_flat_or_empty_series() -> None:
    points = [(T0, 5.0), (T0 + timedelta(hours=1), 5.0)]
    starts = [T0 + timedelta(seconds=i) for i in range(1000)]
    assert str(render_chart("flat", points, starts)).count('class="alert-start"') == MAX_MARKERS
    assert "no data points" in str(render_chart("empty", [], starts))


def test_chart_marks_peaks_bursts_and_silences_in_their_own_style_with_escaped_labels() -> None:
    points = [(T0 + timedelta(minutes=i), float(i % 7)) for i in range(60)]
    events = [
        ChartEvent(T0 + timedelta(minutes=10), "metric-peak", "peak <b>97</b>"),
        ChartEvent(T0 + timedelta(minutes=20), "log-burst", "burst"),
        ChartEvent(T0 + timedelta(minutes=30), "silence", "silenced by alice"),
        ChartEvent(T0 + timedelta(hours=5), "silence", "outside the window"),
    ]
    svg = str(render_chart("cpu", points, [], events=events))
    for kind in ("metric-peak", "log-burst", "silence"):
        assert svg.count(f'class="{kind}"') == 1
    assert "<b>" not in svg and "peak &lt;b&gt;97&lt;/b&gt;" in svg
    assert "outside the window" not in svg


def context_with(timeline: list[dict[str, object]], **series: object) -> IncidentContext:
    return IncidentContext.model_validate(
        {
            "incident_key": "INC-000001",
            "window_start": T0.isoformat(),
            "window_end": (T0 + timedelta(hours=1)).isoformat(),
            "generated_at": T0.isoformat(),
            "complete": True,
            "metrics": [{"name": "cpu", "query": "q", "labels": {}, "unit": "%", "points": [], **series}],
            "timeline": timeline,
        }
    )


def test_the_page_timeline_merges_the_enrichers_events_in_time_order() -> None:
    context = context_with(
        [
            {"at": (T0 + timedelta(minutes=5)).isoformat(), "kind": "log_burst", "title": "burst", "detail": {}},
            {"at": T0.isoformat(), "kind": "alert_start", "title": "already an incident entry", "detail": {}},
            {"at": (T0 + timedelta(minutes=9)).isoformat(), "kind": "metric_peak", "title": "cpu peak", "detail": {}},
        ]
    )
    own = [
        TimelineEntry(at=T0, kind="incident_opened", detail={}),
        TimelineEntry(at=T0 + timedelta(minutes=5), kind="incident_acknowledged", actor="alice", detail={}),
    ]
    entries, hidden = timeline_view(own, {"incident_opened": 1, "incident_acknowledged": 1}, context)
    assert [(e["kind"], e["source"]) for e in entries] == [
        ("incident_opened", "incident"),
        ("incident_acknowledged", "incident"),  # a tie: the incident's own change first
        ("log_burst", "enrichment"),
        ("metric_peak", "enrichment"),
    ]
    assert hidden == []
    assert timeline_view(own, {}, None)[0] == entries[:2]


def test_chart_events_are_the_series_peak_the_bursts_and_the_silences() -> None:
    burst = {"at": (T0 + timedelta(minutes=5)).isoformat(), "kind": "log_burst", "title": "burst", "detail": {}}
    context = context_with([burst], peak=97.5, peak_at=(T0 + timedelta(minutes=9)).isoformat())
    silence = TimelineEntry(at=T0 + timedelta(minutes=20), kind="alert_silenced", actor="bob", detail={})
    events = chart_events(context, context.metrics[0], [silence])
    assert sorted((e.kind, e.at) for e in events) == [
        ("log-burst", T0 + timedelta(minutes=5)),
        ("metric-peak", T0 + timedelta(minutes=9)),
        ("silence", T0 + timedelta(minutes=20)),
    ]
    assert any(e.label == "peak 97.5 %" for e in events)


def test_times_are_utc_in_markup_with_utc_on_hover() -> None:
    tag = str(time_tag(datetime(2026, 11, 1, 4, 30, tzinfo=UTC)))
    assert 'datetime="2026-11-01T04:30:00Z"' in tag and 'title="2026-11-01 04:30:00 UTC"' in tag


def test_only_web_links_survive() -> None:
    assert web_link("http://prometheus:9090/graph?g0.expr=up") == "http://prometheus:9090/graph?g0.expr=up"
    assert web_link("javascript:alert(1)") is None
    assert web_link("data:text/html,<script>") is None
    assert web_link("//evil.example/x") is None
    assert web_link("") is None


def test_durations_read_like_a_person_says_them() -> None:
    assert duration(42) == "42s"
    assert duration(125) == "2m 5s"
    assert duration(3 * 3600 + 60) == "3h 1m"
    assert duration(2 * 86400 + 3600) == "2d 1h"
    assert timeline_summary("comment", {"comment": "rebooted"}) == "rebooted"
    assert (
        timeline_summary("alert_added", {"alertname": "HostDown", "host": "web-1"}) == "alertname=HostDown, host=web-1"
    )


def test_users_file_and_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.yml"
    path.write_text(
        f"users:\n  - name: alice\n    password_hash: '{hash_password('correct horse')}'\n    role: responder\n"
        f"  - name: victor\n    password_hash: '{hash_password('battery staple')}'\n    role: viewer\n"
    )
    users = load_users(path)
    assert users["alice"].role is Role.responder and users["victor"].role is Role.viewer
    assert check_password(users, "alice", "correct horse") == users["alice"]
    assert check_password(users, "alice", "battery staple") is None
    assert check_password(users, "mallory", "correct horse") is None


@pytest.mark.parametrize(
    "content",
    [
        "users: nope",
        "users:\n  - name: a\n    password_hash: plain\n",
        "users:\n  - name: a\n    password_hash: '$argon2id$x'\n    role: admin\n",
        "users: [",
        f"users:\n  - name: {'a' * 257}\n    password_hash: '$argon2id$x'\n",
    ],
)
def test_bad_users_file_is_refused_with_its_name(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users.yml"
    path.write_text(content)
    with pytest.raises(ValueError, match="VIGIL_WEB_USERS_FILE"):
        load_users(path)


def test_tokens_have_roles() -> None:
    book = TokenBook(responder=("resp-token",), readonly=("ro-token",))
    assert book.principal("resp-token").role is Role.responder  # type: ignore[union-attr]
    assert book.principal("ro-token").role is Role.viewer  # type: ignore[union-attr]
    assert book.principal("guess") is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/incidents/INC-000001", "/incidents/INC-000001"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        (None, "/"),
        ("/\\evil", "/"),
    ],
)
def test_login_redirects_stay_on_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_example_users_file_cannot_be_used_as_it_is(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match=r"users\[0\]: `password_hash` must be an argon2 hash"):
        load_users(Path("deploy/users.example.yml"))
    # The hash an earlier example shipped, beside its password, is refused wherever it turns up.
    (shipped,) = EXAMPLE_HASHES
    copied = tmp_path / "users.yml"
    copied.write_text(f"users:\n  - name: alice\n    password_hash: '{shipped}'\n    role: responder\n")
    with pytest.raises(UsersFileError, match="the example's"):
        load_users(copied)


def test_hash_password_command_prints_a_hash_the_users_file_accepts(tmp_path: Path) -> None:
    import subprocess
    import sys

    made = subprocess.run(
        [sys.executable, "-m", "services.web.hash_password"],
        input="another-long-password\n",
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / "users.yml"
    path.write_text(f"users:\n  - name: bob\n    password_hash: '{made.stdout.strip()}'\n    role: viewer\n")
    assert check_password(load_users(path), "bob", "another-long-password") is not None
    short = subprocess.run(
        [sys.executable, "-m", "services.web.hash_password"], input="short\n", capture_output=True, text=True
    )
    assert short.returncode == 1 and "12 characters" in short.stderr


def test_live_payload_carries_what_a_page_updates_and_ignores_the_rest() -> None:
    import uuid

    from services.web.live import live_payload, sse_frame
    from shared.contracts import RawEnvelope

    def envelope(kind: str, data: dict[str, object]) -> RawEnvelope:
        return RawEnvelope(id=uuid.uuid4(), type=kind, occurred_at=T0, producer="test", data=data)

    snapshot = {
        "key": "INC-000001", "title": "t\nwith a newline", "state": "resolved", "severity": "critical",
        "rule": "default", "group_labels": {}, "hosts": ["web-1"], "alert_count": 2, "firing_count": 0,
        "revision": 7, "opened_at": T0.isoformat(), "first_alert_at": T0.isoformat(), "last_alert_at": T0.isoformat(),
    }  # fmt: skip
    payload = live_payload(envelope("incident.resolved", {"incident": snapshot, "change": "resolved"}))
    assert payload is not None
    assert (payload["key"], payload["state"], payload["revision"]) == ("INC-000001", "resolved", 7)
    frame = sse_frame(payload, 1).decode()
    assert frame.count("\n") == 4 and frame.endswith("\n\n")  # one data line: the newline stays escaped
    ready = live_payload(envelope("report.ready", {"key": "INC-000001", "report_version": 2, "formats": ["md"]}))
    assert ready == {"type": "report.ready", "key": "INC-000001", "report_version": 2}
    assert live_payload(envelope("incident.updated", {"nonsense": True})) is None
    assert live_payload(envelope("something.else", {})) is None


async def test_a_live_client_that_falls_behind_is_dropped_not_waited_for() -> None:
    from services.web.live import CLIENT_BUFFER, LiveHub

    hub = LiveHub(max_clients=2)
    async with hub.subscribe() as slow, hub.subscribe() as fast:
        for n in range(CLIENT_BUFFER):
            hub.publish({"n": n})
            assert fast.get_nowait() == {"n": n}
        hub.publish({"n": "one too many"})
        assert slow not in hub.clients and fast in hub.clients
        assert fast.get_nowait() == {"n": "one too many"}
        assert slow.get_nowait() is None  # its stream ends at once instead of idling forever


def test_a_name_is_locked_while_it_has_the_limit_of_earlier_attempts_in_the_window() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    ago = [now - timedelta(seconds=s) for s in (250, 100, 30)]  # oldest first
    limit = Limit(max_failures=3, window_s=300)
    assert retry_after(ago[1:], now, limit) is None
    assert retry_after(ago, now, limit) == 50  # the oldest leaves the window in 50 s, leaving two
    # Five earlier (the limit was lowered since): three must leave the window before a fourth attempt is let through.
    burst = [now - timedelta(seconds=s) for s in (250, 200, 100, 30, 10)]
    assert retry_after(burst, now, limit) == 200
    assert retry_after([now - timedelta(seconds=299.5)] * 3, now, limit) == 1  # rounds up, never 0
    assert retry_after(burst, now, Limit(max_failures=0, window_s=300)) is None


# --- login and proxy hardening -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/incidents/INC-000001",
        "/incidents/INC-000001?alerts=all#timeline",
        "/?state=open&host=web-1&matcher=job%3D%22node%22",
        "/?q=disk%20full",
        "/?q=a%5Cb",  # a backslash in a search, encoded: the query cannot change where the browser goes
        "/javascript:alert(1)",  # a path on this site, however it reads
    ],
)
def test_a_plain_path_on_this_site_survives_login(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "//evil.example",
        "///evil.example",
        "https://evil.example",
        "HTTP://evil.example",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/a\\b",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\x00",
        "/\x7f",
        "/\x85/evil.example",
        "\t//evil.example",
        " //evil.example",
        "\u3000//evil.example",
        "/ /evil.example",
        "/%2F%2Fevil.example",
        "/%2f%2fevil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "/%5cevil.example",
        "/%09/evil.example",
        "/%0d%0a/evil.example",
        "/%252F%252Fevil.example",
        "/%25252F%25252Fevil.example",
        "/%2e%2e/%2e%2e//evil.example",
        "/./",
        "/é",
    ],
)
def test_a_hostile_next_goes_home(target: str | None) -> None:
    assert safe_next(target) == "/"


NETS = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # An untrusted peer is the client, whatever it says it forwards.
        ("203.0.113.7", [], "203.0.113.7"),
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        ("203.0.113.7", ["10.0.0.1, 10.0.0.2"], "203.0.113.7"),
        # A trusted proxy: the address it appended.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        # What the client put in front of the proxy's entry is ignored.
        ("10.0.0.2", ["1.1.1.1, 2.2.2.2, 198.51.100.1"], "198.51.100.1"),
        # Several proxies, one X-Forwarded-For line each or comma-separated: the first untrusted from the right.
        ("10.0.0.2", ["1.1.1.1, 198.51.100.1, 10.0.0.9, 10.0.0.3"], "198.51.100.1"),
        ("10.0.0.2", ["1.1.1.1", "198.51.100.1", "10.0.0.3"], "198.51.100.1"),
        # A client claiming to be a trusted proxy still ends the walk only at an untrusted address.
        ("10.0.0.2", ["10.0.0.1, 198.51.100.1"], "198.51.100.1"),
        # Nothing forwarded: the proxy asked for itself.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", [""], "10.0.0.2"),
        # Garbage stops the walk at the proxy that passed it on: no address of the client's choosing.
        ("10.0.0.2", ["1.1.1.1, not-an-address"], "10.0.0.2"),
        ("10.0.0.2", ["1.1.1.1, unknown, 10.0.0.3"], "10.0.0.3"),
        ("10.0.0.2", ["198.51.100.1, , 10.0.0.3"], "10.0.0.3"),
        ("10.0.0.2", ["1.1.1.1\udcff"], "10.0.0.2"),
        ("10.0.0.2", ["999.1.1.1"], "10.0.0.2"),
        ("10.0.0.2", ["1.1.1.1/8"], "10.0.0.2"),
        # Ports and brackets, as some proxies write them; mapped IPv4 is IPv4.
        ("10.0.0.2", ["198.51.100.1:5678"], "198.51.100.1"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.2", [" 2001:db8::1 "], "2001:db8::1"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        ("fd00::2", ["198.51.100.1"], "198.51.100.1"),
        # Every hop trusted: the leftmost is the client, inside the trusted networks.
        ("10.0.0.2", ["10.1.1.1, 10.0.0.3"], "10.1.1.1"),
    ],
)
def test_the_client_address_believes_x_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert str(client_address(peer, forwarded, NETS)) == client


def test_without_trusted_proxies_the_peer_is_the_client_and_a_peer_must_be_an_address() -> None:
    assert str(client_address("10.0.0.2", ["198.51.100.1"], ())) == "10.0.0.2"
    with pytest.raises(ValueError, match="not an IP address"):
        client_address("/run/vigil.sock", [], NETS)


def test_failures_are_counted_per_ipv4_address_and_per_ipv6_slash_64() -> None:
    assert address_key(ipaddress.ip_address("203.0.113.7")) == "203.0.113.7"
    assert address_key(ipaddress.ip_address("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert address_key(ipaddress.ip_address("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"


def test_a_login_is_refused_by_whichever_count_frees_up_later() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    name_limit, address_limit = Limit(max_failures=2, window_s=300), Limit(max_failures=3, window_s=300)
    two = [now - timedelta(seconds=s) for s in (200, 100)]
    three = [now - timedelta(seconds=s) for s in (50, 40, 30)]
    assert refusal([], [], now, name_limit, address_limit) is None
    assert refusal(two[1:], three[1:], now, name_limit, address_limit) is None
    assert refusal(two, three[1:], now, name_limit, address_limit) == Refusal(Scope.name, 100)
    assert refusal(two[1:], three, now, name_limit, address_limit) == Refusal(Scope.address, 250)
    assert refusal(two, three, now, name_limit, address_limit) == Refusal(Scope.address, 250)
    assert refusal(two, three, now, name_limit, Limit(max_failures=0, window_s=300)) == Refusal(Scope.name, 100)


@pytest.mark.parametrize("value", ["\udcff\udcfe", "\x00", "\x1b[31m", "Bearer a\tb", "x\x7f", "\x85", "a\r\nb"])
def test_credential_headers_must_be_text(value: str) -> None:
    assert malformed_header(value)


@pytest.mark.parametrize("value", ["Bearer abc-123_XYZ", "vigil_session=abc; theme=dark", "", "café=crème"])
def test_ordinary_header_values_pass(value: str) -> None:
    assert not malformed_header(value)


def test_user_names_with_control_characters_are_refused() -> None:
    assert has_control_chars("al\x00ice") and has_control_chars("alice\n") and has_control_chars("\x9balice")
    assert not has_control_chars("Zoë O'Brien")


def test_a_warning_anyone_can_provoke_is_logged_once_a_minute() -> None:
    once = OncePer(60)
    assert [once.due(t) for t in (0, 1, 59.9, 60, 61, 130)] == [True, False, False, True, False, True]


async def test_password_checks_run_a_bounded_number_at_once_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    import services.web.access as access

    running, most, loop_thread = 0, 0, threading.get_ident()
    lock = threading.Lock()

    def slow_check(users: object, name: str, password: str) -> None:
        nonlocal running, most
        assert threading.get_ident() != loop_thread  # never on the event loop
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)
        with lock:
            running -= 1

    monkeypatch.setattr(access, "check_password", slow_check)
    checks = PasswordChecks(concurrency=2, wait_s=0.1)

    async def login() -> str:
        try:
            async with checks.slot() as verify:
                await verify({}, "alice", "guess")
        except PasswordChecksBusy:
            return "busy"
        return "checked"

    outcomes = await asyncio.gather(*(login() for _ in range(5)))
    assert sorted(outcomes) == ["busy"] * 3 + ["checked"] * 2 and most == 2
    # A slot whose login never got to the check (refused before it) is free again at once.
    async with checks.slot():
        pass
    assert sorted(await asyncio.gather(login(), login())) == ["checked", "checked"]


async def test_a_cancelled_login_keeps_its_slot_until_argon2_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import services.web.access as access

    release = threading.Event()
    monkeypatch.setattr(access, "check_password", lambda *_: release.wait(5))
    checks = PasswordChecks(concurrency=1, wait_s=0.1)

    async def login() -> None:
        async with checks.slot() as verify:
            await verify({}, "alice", "guess")

    first = asyncio.create_task(login())
    await asyncio.sleep(0.05)
    first.cancel()
    await asyncio.sleep(0.05)
    with pytest.raises(PasswordChecksBusy):  # the thread still runs: its slot is not free
        async with checks.slot():
            pass
    release.set()
    await asyncio.sleep(0.1)
    async with checks.slot():
        pass


def test_rendered_workbooks_are_kept_within_their_bytes_least_recently_used_first() -> None:
    cache = XlsxCache(max_bytes=10)
    cache.put(("INC-000001", 1, "a"), b"1234")
    cache.put(("INC-000001", 2, "b"), b"1234")
    assert cache.get(("INC-000001", 1, "a")) == b"1234"  # now the most recently used
    cache.put(("INC-000002", 1, "c"), b"1234")  # 12 bytes: version 2, used least recently, goes
    assert cache.get(("INC-000001", 2, "b")) is None
    assert cache.get(("INC-000001", 1, "a")) == b"1234" and cache.size == 8 and len(cache) == 2
    # The same version with other JSON (a database restored from a backup) is not answered from the cache.
    assert cache.get(("INC-000001", 1, "other")) is None
    cache.put(("INC-000003", 1, "d"), b"x" * 11)  # larger than the whole cache: not kept, nothing pushed out
    assert cache.get(("INC-000003", 1, "d")) is None and len(cache) == 2
    cache.put(("INC-000001", 1, "a"), b"12")  # put again: counted once
    assert cache.size == 6
