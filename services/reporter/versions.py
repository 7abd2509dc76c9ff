"""Which stored version a set of freshly rendered reports becomes: pure rules, no database."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

FORMATS = ("md", "xlsx", "json")


@dataclass(frozen=True)
class Rendered:
    format: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Decision:
    version: int
    new: bool


def decide(latest_version: int | None, latest_hashes: Mapping[str, str], rendered: Mapping[str, str]) -> Decision:
    """A new version only when some format's bytes differ from the newest stored version (or none is stored).

    A redelivered event, or an event that changed nothing the reports show, keeps the current version.
    """
    if latest_version is not None and dict(latest_hashes) == dict(rendered):
        return Decision(latest_version, new=False)
    return Decision((latest_version or 0) + 1, new=True)
