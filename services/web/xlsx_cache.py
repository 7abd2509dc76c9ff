"""XLSX reports the web rendered from stored versions, kept for the next download.

The reporter stores each version's Markdown and JSON; a version's XLSX is rendered from its JSON when it is first
downloaded (services/web/downloads.py), some 25 ms of CPU for a typical incident, most of a second for one of 10,000
alerts. A stored version never changes, so an entry never goes stale: entries are keyed by incident, version and the
JSON's sha256 (so a database restored from a backup, numbering other content alike, cannot be answered from here).
The least recently used go first once the entries pass `max_bytes`. Memory of one web process: each replica keeps its
own. Two first downloads of one version at the same moment both render it; the second result replaces the first.
"""

from __future__ import annotations

from collections import OrderedDict

# (incident key, report version, sha256 of that version's JSON)
CacheKey = tuple[str, int, str]
# Some 3,000 typical incidents' workbooks (20 KB each), or 60 of 10,000 alerts (1 MB).
MAX_BYTES = 64 * 1024 * 1024


class XlsxCache:
    """Rendered workbooks by `CacheKey`, at most `max_bytes` of them; the least recently used go first."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[CacheKey, bytes] = OrderedDict()

    def get(self, key: CacheKey) -> bytes | None:
        content = self._entries.get(key)
        if content is not None:
            self._entries.move_to_end(key)
        return content

    def put(self, key: CacheKey, content: bytes) -> None:
        if len(content) > self.max_bytes:
            return  # it would push out everything else and still not fit
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._entries[key] = content
        self.size += len(content)
        while self.size > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
