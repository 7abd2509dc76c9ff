"""Bounding an alert (shared/alert_limits.py): pure rules on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.correlator.rules import GROUP_KEY_MAX_BYTES, Rule, group_key
from shared.alert_limits import (
    AlertLimits,
    adjustment_kinds,
    bound_alert,
    bound_webhook_alert,
    cut_text,
    describe_adjustments,
    plainly_within,
    stable_fingerprint,
)
from shared.contracts import AlertAdjustments, WebhookAlert

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LIMITS = AlertLimits(max_labels=8, max_label_name_bytes=64, max_label_value_bytes=100, max_annotation_bytes=256)


def bound(**fields: object):  # type: ignore[no-untyped-def]
    alert = {
        "labels": {"alertname": "HostDown", "instance": "db1:9100"},
        "annotations": {},
        "fingerprint": "0123456789abcdef",
        "starts_at": NOW - timedelta(minutes=5),
        "ends_at": None,
        "generator_url": "http://prometheus:9090/graph?g0.expr=up",
        "received_at": NOW,
        "limits": LIMITS,
        **fields,
    }
    return bound_alert(**alert)  # type: ignore[arg-type]


def test_an_ordinary_alert_is_kept_as_sent() -> None:
    result = bound()
    assert result.adjustments is None
    assert result.labels == {"alertname": "HostDown", "instance": "db1:9100"}
    assert result.fingerprint == "0123456789abcdef" and result.starts_at == NOW - timedelta(minutes=5)


def test_a_long_value_is_cut_with_a_marker_that_says_how_much() -> None:
    text, removed = cut_text("x" * 3000, 2048)
    assert len(text.encode()) <= 2048 and text.startswith("x" * 2000)
    assert text.endswith(f"…[cut {removed:,} bytes]") and removed == 3000 - text.index("…")
    assert cut_text(text, 2048) == (text, 0)  # cutting again changes nothing


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=0, max_size=400), limit=st.integers(64, 300))
def test_cut_text_fits_its_limit_keeps_whole_characters_and_is_idempotent(text: str, limit: int) -> None:
    cut, removed = cut_text(text, limit)
    assert len(cut.encode()) <= limit
    if removed:
        kept = cut[: cut.rindex("…[cut ")]
        assert text.startswith(kept) and len(text.encode()) - len(kept.encode()) == removed
    else:
        assert cut == text
    assert cut_text(cut, limit) == (cut, 0)


def test_a_3kb_instance_label_is_cut_and_counted() -> None:
    result = bound(labels={"alertname": "HostDown", "instance": "é" * 1500})
    assert result.adjustments is not None
    assert len(result.labels["instance"].encode()) <= 100 and "…[cut " in result.labels["instance"]
    assert result.adjustments.cut == {"labels.instance": 3000 - len(result.labels["instance"].split("…")[0].encode())}
    assert adjustment_kinds(result.adjustments) == {"labels": 1}


def test_labels_past_the_limit_are_dropped_keeping_the_ones_that_name_the_alert() -> None:
    labels = {f"extra_{i:02d}": "v" for i in range(20)} | {"alertname": "A", "severity": "critical", "job": "node"}
    result = bound(labels=labels)
    assert result.adjustments is not None and result.adjustments.dropped_labels == 23 - 8
    assert {"alertname", "severity", "job"} <= set(result.labels) and len(result.labels) == 8
    assert bound(labels=labels).labels == result.labels  # the same ones every time


def test_long_label_names_and_annotations_are_cut() -> None:
    result = bound(labels={"alertname": "A", "n" * 100: "v"}, annotations={"description": "d" * 1000})
    assert result.adjustments is not None
    assert set(result.adjustments.cut) == {
        "label_names." + next(k for k in result.labels if k != "alertname"),
        "annotations.description",
    }
    assert len(result.annotations["description"].encode()) <= 256


def test_a_fingerprint_that_is_not_alertmanagers_is_replaced_by_a_stable_hash() -> None:
    odd = bound(fingerprint="../../etc/passwd" + "x" * 500)
    assert odd.fingerprint == stable_fingerprint("../../etc/passwd" + "x" * 500)
    assert len(odd.fingerprint) == 16 and int(odd.fingerprint, 16) >= 0
    assert odd.adjustments is not None and odd.adjustments.fingerprint.startswith("../../etc/passwd")
    assert bound(fingerprint="0123456789ABCDEF").fingerprint != "0123456789ABCDEF"  # not what Alertmanager sends
    # None sent: Alertmanager's own hash of the labels, and nothing to report.
    assert bound(fingerprint="").adjustments is None


def test_impossible_times_give_way_to_the_receipt_time_and_the_original_is_kept() -> None:
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    result = bound(starts_at=year_one, ends_at=datetime(9999, 12, 31, tzinfo=UTC))
    assert result.starts_at == NOW and result.ends_at is None
    assert result.adjustments is not None
    assert result.adjustments.starts_at == "0001-01-01T00:00:00+00:00"
    assert result.adjustments.ends_at == "9999-12-31T00:00:00+00:00"
    assert bound(starts_at=NOW + timedelta(hours=23)).adjustments is None  # clock skew, not nonsense
    assert bound(starts_at=NOW + timedelta(days=2)).starts_at == NOW
    assert bound(starts_at=datetime(1969, 12, 31, 23, tzinfo=UTC)).starts_at == NOW


def test_a_generator_url_too_long_to_be_a_link_is_kept_only_as_text() -> None:
    limits = AlertLimits(max_generator_url_bytes=256)
    url = "http://prometheus:9090/graph?g0.expr=" + "a" * 1000
    result = bound(generator_url=url, limits=limits)
    assert result.generator_url == ""
    assert result.adjustments is not None and result.adjustments.generator_url.startswith("http://prometheus:9090/")
    assert result.adjustments.cut["generatorURL"] > 0


def test_bounding_twice_changes_nothing_more() -> None:
    first = bound(
        labels={"alertname": "A", "instance": "i" * 500}, fingerprint="weird", starts_at=datetime(1, 1, 1, tzinfo=UTC)
    )
    again = bound(
        labels=first.labels,
        fingerprint=first.fingerprint,
        starts_at=first.starts_at,
        earlier=first.adjustments,
    )
    assert (again.labels, again.fingerprint, again.starts_at, again.adjustments) == (
        first.labels,
        first.fingerprint,
        first.starts_at,
        first.adjustments,
    )


def test_earlier_adjustments_are_kept() -> None:
    earlier = AlertAdjustments(cut={"receiver": 10})
    result = bound(earlier=earlier)
    assert result.adjustments == earlier


def test_long_group_keys_are_hashed_below_the_index_limit() -> None:
    rule = Rule(name="default")
    short = group_key(rule, {"host": "db1"})
    assert short == 'default:{"host":"db1"}'
    long = group_key(rule, {"host": "h" * 3000})
    assert long.startswith("default:sha256:") and len(long.encode()) < GROUP_KEY_MAX_BYTES
    assert group_key(rule, {"host": "h" * 3000}) == long and group_key(rule, {"host": "h" * 3001}) != long


def test_adjustments_are_described_in_words() -> None:
    assert describe_adjustments(None) == []
    result = bound(
        labels={"alertname": "A", "instance": "i" * 500} | {f"x{n}": "v" for n in range(10)},
        fingerprint="weird",
        starts_at=datetime(1, 1, 1, tzinfo=UTC),
    )
    assert result.adjustments is not None
    lines = describe_adjustments(result.adjustments.model_dump(mode="json", exclude_defaults=True))
    assert lines == [
        "startsAt sent as 0001-01-01T00:00:00+00:00: the time it was received stands in",
        "fingerprint sent as weird: replaced by a hash of it",
        "4 labels past the limit not stored",
        f"cut to fit: labels.instance ({result.adjustments.cut['labels.instance']:,} bytes)",
    ]


@settings(max_examples=300, deadline=None)
@given(
    labels=st.dictionaries(st.text(max_size=80), st.text(max_size=120), max_size=10),
    annotations=st.dictionaries(st.text(max_size=20), st.text(max_size=400), max_size=4),
    fingerprint=st.sampled_from(["", "0123456789abcdef", "ABCDEF0123456789", "x"]),
    offset=st.sampled_from([timedelta(0), timedelta(days=-20000), timedelta(days=2)]),
)
def test_the_fast_check_never_passes_an_alert_bounding_would_change(
    labels: dict[str, str], annotations: dict[str, str], fingerprint: str, offset: timedelta
) -> None:
    alert = WebhookAlert(
        status="firing", labels=labels, annotations=annotations, startsAt=NOW + offset, fingerprint=fingerprint
    )
    if plainly_within(alert, NOW, LIMITS):
        assert bound_webhook_alert(alert, NOW, LIMITS) == bound(
            labels=labels, annotations=annotations, fingerprint=fingerprint, starts_at=NOW + offset, generator_url=""
        )
        assert (
            bound(labels=labels, annotations=annotations, fingerprint=fingerprint, starts_at=NOW + offset).adjustments
            is None
        )
