"""Several RabbitMQ URLs in one setting (`VIGIL_AMQP_URL`, comma-separated): the nodes of one cluster, tried in turn.

Kept apart from shared.messaging so the settings can check every URL without loading the AMQP client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("amqp", "amqps")


def split(value: str) -> list[str]:
    """The URLs in `value`, in order; ValueError naming the one at fault. A comma cannot be part of one URL's
    host, port or path that RabbitMQ would take, so it separates them (spaces around it are allowed)."""
    urls = [part.strip() for part in value.split(",")]
    if not any(urls):
        raise ValueError("no RabbitMQ URL given")
    for n, url in enumerate(urls, 1):
        if not url:
            raise ValueError(f"URL {n} of {len(urls)} is empty")
        try:
            scheme = urlsplit(url).scheme
        except ValueError as exc:
            raise ValueError(f"URL {n} of {len(urls)} is not a URL: {exc}") from None
        if scheme not in SCHEMES:
            raise ValueError(f"URL {n} of {len(urls)} must start with amqp:// or amqps://")
    return urls
