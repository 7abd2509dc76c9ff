"""Which stored version a set of freshly rendered reports becomes: pure rules, no database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["new", "unchanged", "superseded"]


@dataclass(frozen=True)
class Source:
    """What a rendering was made from: the incident's `revision` and its enrichment's `version` (None: the incident
    was not enriched yet), as read in the one snapshot the renderer loaded."""

    incident_revision: int
    enrichment_version: int | None


def _rank(source: Source | None) -> tuple[int, ...]:
    # A tuple sorts after its own prefixes, so "not enriched" comes before every enrichment of the same revision,
    # and the empty tuple (a version stored before sources were recorded) before everything.
    if source is None:
        return ()
    if source.enrichment_version is None:
        return (source.incident_revision,)
    return (source.incident_revision, source.enrichment_version)


def is_older(source: Source | None, than: Source | None) -> bool:
    """Whether `source` shows an older state of the incident than `than`.

    The incident revision decides, then the enrichment version; no enrichment is older than any, and no source at
    all (None: reports stored before sources were recorded) is older than every source. Both numbers only grow, so
    of two snapshots the later one has neither smaller: the order is the order in which they were read, whichever
    rendering finishes first.
    """
    return _rank(source) < _rank(than)


@dataclass(frozen=True)
class Decision:
    """`version`: the incident's newest stored version once the decision is carried out. `records_source`: that
    version's source becomes the rendering's (it is a new version, or a newer source rendered the same bytes)."""

    version: int
    outcome: Outcome
    records_source: bool

    @property
    def new(self) -> bool:
        return self.outcome == "new"


def decide(
    latest_version: int | None,
    latest_hashes: Mapping[str, str],
    rendered: Mapping[str, str],
    *,
    latest_source: Source | None,
    source: Source,
) -> Decision:
    """What a rendering of `source` with sha256 `rendered` becomes, given the newest stored version.

    A rendering of an older source than the newest version's is superseded: it is not stored, so a slow rendering
    can never replace reports of a newer state as the latest (whatever its bytes). Otherwise a new version only when
    some format's bytes differ (or none is stored): a redelivered event, or an event that changed nothing the reports
    show, keeps the current version, which from then on counts as rendered from the newer source, as it shows it.
    Only the rendered formats are compared: a version stored with an XLSX (before it was rendered on download) is
    unchanged when its Markdown and JSON are, as the XLSX is made from the JSON.
    """
    if latest_version is None:
        return Decision(1, "new", records_source=True)
    if is_older(source, latest_source):
        return Decision(latest_version, "superseded", records_source=False)
    if {fmt: latest_hashes.get(fmt) for fmt in rendered} == dict(rendered):
        return Decision(latest_version, "unchanged", records_source=is_older(latest_source, source))
    return Decision(latest_version + 1, "new", records_source=True)
