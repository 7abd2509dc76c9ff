"""Bounding what one alert may carry, so that nothing an otherwise valid alert holds makes it unstorable.

Alertmanager never retries a 4xx and would drop the whole group with one odd alert in it, so an alert past a
limit is stored bounded rather than refused: a value too long is cut with a visible marker
(`…[cut 3,912 bytes]`), labels past the count limit are dropped (the ones that name an alert kept first), a
fingerprint that is not Alertmanager's 16 hex digits is replaced by a stable hash of it, and a start or end time
before 1970 or more than a day after its receipt is replaced by the receipt time (an end: dropped). What was
changed, and the original where it is small enough to keep, travels with the alert as `AlertAdjustments` and is
stored with it.

Pure and idempotent: bounding an alert already bounded with the same limits changes nothing, so ingest bounds what
it publishes and the correlator bounds again what it consumes (a message from anywhere else cannot get past it).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import AlertAdjustments, WebhookAlert
from shared.fingerprint import label_fingerprint

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Alertmanager's clock and the sender's may disagree a little; a start a day ahead is not skew but nonsense.
FUTURE_TOLERANCE = timedelta(days=1)
ALERTMANAGER_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
# Kept first when an alert has more labels than allowed: what names it, groups it and ties it to a machine.
KEY_LABELS = {name: rank for rank, name in enumerate(("alertname", "severity", "instance", "host", "job", "source"))}


@dataclass(frozen=True)
class AlertLimits:
    max_labels: int = 100
    max_label_name_bytes: int = 256
    max_label_value_bytes: int = 2048
    max_annotation_bytes: int = 32_768
    max_generator_url_bytes: int = 8192
    max_fingerprint_bytes: int = 128

    @classmethod
    def from_settings(cls, settings: Any) -> AlertLimits:
        return cls(
            max_labels=settings.ingest_max_labels,
            max_label_name_bytes=settings.ingest_max_label_name_bytes,
            max_label_value_bytes=settings.ingest_max_label_value_bytes,
            max_annotation_bytes=settings.ingest_max_annotation_bytes,
            max_generator_url_bytes=settings.ingest_max_generator_url_bytes,
            max_fingerprint_bytes=settings.ingest_max_fingerprint_bytes,
        )


DEFAULT_LIMITS = AlertLimits()


def fits(text: str, limit: int) -> bool:
    # A UTF-8 character takes at most 4 bytes: most values are known to fit without being encoded.
    return len(text) * 4 <= limit or len(text.encode()) <= limit


def cut_text(text: str, limit: int) -> tuple[str, int]:
    """`text` in at most `limit` bytes of UTF-8: unchanged, or its start and a marker saying how much was cut.

    Returns the text and the bytes cut (0: unchanged). A cut text fits its limit, so cutting it again is a no-op.
    """
    if fits(text, limit):
        return text, 0
    raw = text.encode()
    # The marker with the largest number it can show is at least as long as the one finally used.
    room = max(0, limit - len(_marker(len(raw)).encode()))
    kept = raw[:room].decode(errors="ignore")  # on a character boundary
    removed = len(raw) - len(kept.encode())
    return kept + _marker(removed), removed


def _marker(removed: int) -> str:
    return f"…[cut {removed:,} bytes]"


def stable_fingerprint(sent: str) -> str:
    """16 hex digits for a fingerprint that is not Alertmanager's: the same for the same text, every time."""
    return hashlib.blake2b(sent.encode(), digest_size=8).hexdigest()


def sane_time(at: datetime, received_at: datetime) -> bool:
    """A time Vigil can reason with: not before 1970, and not more than a day after it was received."""
    return EPOCH <= at <= received_at + FUTURE_TOLERANCE


@dataclass
class _Changes:
    """What bounding one alert changed so far; becomes its `AlertAdjustments`."""

    cut: dict[str, int] = field(default_factory=dict)
    dropped_labels: int = 0
    dropped_annotations: int = 0
    fingerprint: str | None = None
    starts_at: str | None = None
    ends_at: str | None = None
    generator_url: str | None = None

    @classmethod
    def of(cls, earlier: AlertAdjustments | None) -> _Changes:
        if earlier is None:
            return cls()
        return cls(
            dict(earlier.cut),
            earlier.dropped_labels,
            earlier.dropped_annotations,
            earlier.fingerprint,
            earlier.starts_at,
            earlier.ends_at,
            earlier.generator_url,
        )

    def adjustments(self) -> AlertAdjustments | None:
        if not (
            self.cut
            or self.dropped_labels
            or self.dropped_annotations
            or self.fingerprint is not None
            or self.starts_at is not None
            or self.ends_at is not None
            or self.generator_url is not None
        ):
            return None
        return AlertAdjustments(
            cut=self.cut,
            dropped_labels=self.dropped_labels,
            dropped_annotations=self.dropped_annotations,
            fingerprint=self.fingerprint,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            generator_url=self.generator_url,
        )


def bound_map(
    values: Mapping[str, str],
    *,
    max_items: int,
    name_limit: int,
    value_limit: int,
    field: str,
    cut: dict[str, int],
) -> tuple[dict[str, str], int]:
    """`values` bounded: names and values cut (recorded in `cut` as `<field>.<name>` and `<singular>_names.<name>`),
    items past `max_items` dropped, key labels kept first and then by name so the same ones go every time.

    Returns the bounded mapping and the number of items dropped."""
    if len(values) <= max_items and all(fits(k, name_limit) and fits(v, value_limit) for k, v in values.items()):
        return dict(values), 0
    singular = field.removesuffix("s")
    out: dict[str, str] = {}
    dropped = 0
    for name in sorted(values, key=lambda k: (KEY_LABELS.get(k, len(KEY_LABELS)), k)):
        short_name, name_cut = cut_text(name, name_limit)
        if len(out) >= max_items or short_name in out:  # a second long name cut to the same start is not told apart
            dropped += 1
            continue
        if name_cut:
            cut[f"{singular}_names.{short_name}"] = name_cut
        value, value_cut = cut_text(values[name], value_limit)
        if value_cut:
            cut[f"{field}.{short_name}"] = value_cut
        out[short_name] = value
    return out, dropped


@dataclass(frozen=True)
class BoundedAlert:
    """An alert's fields as Vigil stores them, and what was changed to get there (None: nothing)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    adjustments: AlertAdjustments | None


def bound_alert(
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    fingerprint: str,
    starts_at: datetime,
    ends_at: datetime | None,
    generator_url: str,
    received_at: datetime,
    limits: AlertLimits,
    earlier: AlertAdjustments | None = None,
) -> BoundedAlert:
    """The alert within `limits`. `earlier`: adjustments already made (by ingest, or to its notification), kept.

    An empty fingerprint becomes Alertmanager's hash of the labels as sent, before any is cut, so that ingest and
    the correlator agree on it."""
    changes = _Changes.of(earlier)
    if not fingerprint:
        fingerprint = label_fingerprint(labels)
    elif not ALERTMANAGER_FINGERPRINT.fullmatch(fingerprint):
        changes.fingerprint = changes.fingerprint or cut_text(fingerprint, limits.max_fingerprint_bytes)[0]
        fingerprint = stable_fingerprint(fingerprint)
    bounded_labels, dropped = bound_map(
        labels,
        max_items=limits.max_labels,
        name_limit=limits.max_label_name_bytes,
        value_limit=limits.max_label_value_bytes,
        field="labels",
        cut=changes.cut,
    )
    changes.dropped_labels += dropped
    bounded_annotations, dropped = bound_map(
        annotations,
        max_items=limits.max_labels,
        name_limit=limits.max_label_name_bytes,
        value_limit=limits.max_annotation_bytes,
        field="annotations",
        cut=changes.cut,
    )
    changes.dropped_annotations += dropped
    if not sane_time(starts_at, received_at):
        changes.starts_at = changes.starts_at or starts_at.isoformat()
        starts_at = received_at
    if ends_at is not None and not sane_time(ends_at, received_at):
        changes.ends_at = changes.ends_at or ends_at.isoformat()
        ends_at = None
    if not fits(generator_url, limits.max_generator_url_bytes):
        # A cut URL is a broken link and a broken expression: kept only to be read, never followed or queried.
        changes.generator_url, changes.cut["generatorURL"] = cut_text(generator_url, limits.max_generator_url_bytes)
        generator_url = ""
    return BoundedAlert(
        labels=bounded_labels,
        annotations=bounded_annotations,
        fingerprint=fingerprint,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        adjustments=changes.adjustments(),
    )


def plainly_within(alert: WebhookAlert, received_at: datetime, limits: AlertLimits) -> bool:
    """True for an alert that surely needs no change: the common case, told without copying or encoding anything
    (ingest and the correlator see thousands a second). False sends it through `bound_alert`, which decides."""
    labels, annotations = alert.labels, alert.annotations
    if len(labels) > limits.max_labels or len(annotations) > limits.max_labels:
        return False
    if len(alert.fingerprint) != 16 or not ALERTMANAGER_FINGERPRINT.fullmatch(alert.fingerprint):
        return False
    if not sane_time(alert.starts_at, received_at) or (
        alert.ends_at is not None and not sane_time(alert.ends_at, received_at)
    ):
        return False
    # A UTF-8 character takes at most 4 bytes: a string of at most a quarter of the limit in characters fits.
    names, values, notes = (
        limits.max_label_name_bytes // 4,
        limits.max_label_value_bytes // 4,
        limits.max_annotation_bytes // 4,
    )
    for name, value in labels.items():
        if len(name) > names or len(value) > values:
            return False
    for name, value in annotations.items():
        if len(name) > names or len(value) > notes:
            return False
    return len(alert.generator_url) <= limits.max_generator_url_bytes // 4


def bound_webhook_alert(
    alert: WebhookAlert, received_at: datetime, limits: AlertLimits, earlier: AlertAdjustments | None = None
) -> BoundedAlert:
    """`bound_alert` over an alert as a webhook carries it."""
    if plainly_within(alert, received_at, limits):
        return BoundedAlert(
            labels=alert.labels,
            annotations=alert.annotations,
            fingerprint=alert.fingerprint,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            generator_url=alert.generator_url,
            adjustments=earlier,
        )
    return bound_alert(
        labels=alert.labels,
        annotations=alert.annotations,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        generator_url=alert.generator_url,
        received_at=received_at,
        limits=limits,
        earlier=earlier,
    )


@dataclass(frozen=True)
class BoundedNotification:
    """The fields a webhook notification shares among its alerts, within limits, and what was cut of them."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    external_url: str
    cut: dict[str, int]

    def earlier(self) -> AlertAdjustments | None:
        return AlertAdjustments(cut=self.cut) if self.cut else None


def bound_notification(
    *, receiver: str, group_key: str, group_labels: Mapping[str, str], external_url: str, limits: AlertLimits
) -> BoundedNotification:
    cut: dict[str, int] = {}
    receiver, removed = cut_text(receiver, limits.max_label_value_bytes)
    if removed:
        cut["receiver"] = removed
    group_key, removed = cut_text(group_key, limits.max_generator_url_bytes)
    if removed:
        cut["group_key"] = removed
    bounded_groups, _ = bound_map(
        group_labels,
        max_items=limits.max_labels,
        name_limit=limits.max_label_name_bytes,
        value_limit=limits.max_label_value_bytes,
        field="group_labels",
        cut=cut,
    )
    if not fits(external_url, limits.max_generator_url_bytes):
        cut["externalURL"] = len(external_url.encode())
        external_url = ""
    return BoundedNotification(receiver, group_key, bounded_groups, external_url, cut)


def adjustment_kinds(adjustments: AlertAdjustments) -> Counter[str]:
    """How many values of each kind were changed, for a metric labelled by kind (a few fixed values)."""
    kinds: Counter[str] = Counter()
    for path in adjustments.cut:
        kinds[path.split(".", 1)[0]] += 1
    kinds["labels_dropped"] += adjustments.dropped_labels
    kinds["annotations_dropped"] += adjustments.dropped_annotations
    for name in ("fingerprint", "starts_at", "ends_at"):
        if getattr(adjustments, name) is not None:
            kinds[name] += 1
    return +kinds


def describe_adjustments(adjustments: Mapping[str, Any] | None) -> list[str]:
    """What was changed to store an alert, in words for its page and reports (values are shown as text, escaped
    by whatever renders them)."""
    if not adjustments:
        return []
    lines = []
    if adjustments.get("starts_at"):
        lines.append(f"startsAt sent as {adjustments['starts_at']}: the time it was received stands in")
    if adjustments.get("ends_at"):
        lines.append(f"endsAt sent as {adjustments['ends_at']}: not a possible time, left out")
    if adjustments.get("fingerprint"):
        lines.append(f"fingerprint sent as {adjustments['fingerprint']}: replaced by a hash of it")
    for kind, noun in (("dropped_labels", "label"), ("dropped_annotations", "annotation")):
        if count := adjustments.get(kind):
            lines.append(f"{count:,} {noun}{'s' if count != 1 else ''} past the limit not stored")
    if adjustments.get("generator_url"):
        lines.append(f"generatorURL too long to keep as a link, starting {adjustments['generator_url']}")
    cut = {k: v for k, v in (adjustments.get("cut") or {}).items() if k != "generatorURL"}
    if cut:
        lines.append(
            "cut to fit: " + ", ".join(f"{field} ({removed:,} bytes)" for field, removed in sorted(cut.items()))
        )
    return lines
