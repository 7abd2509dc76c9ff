"""Which URLs from an alert may become links: one rule for the dashboard and every report.

Anything in an alert is untrusted. Only an absolute http(s) URL with a host is a link; `javascript:`, `data:`,
relative or scheme-relative URLs, and text that is not a URL at all are shown as text, never made clickable.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit


@lru_cache(maxsize=4096)
def _web_link(url: str) -> str | None:
    text = url.strip()
    # Control characters (a newline inside a URL, say) are not part of any link worth following.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def web_link(url: str | None) -> str | None:
    """`url` stripped when it may be a link (http or https, with a host), else None."""
    return _web_link(url) if url else None


def is_web_url(url: str | None) -> bool:
    return web_link(url) is not None
