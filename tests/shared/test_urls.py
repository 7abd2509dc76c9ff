"""The one rule for links out of alert data (shared/urls.py)."""

from __future__ import annotations

import pytest

from shared.urls import is_web_url, web_link


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus:9090/graph?g0.expr=up",
        "https://runbooks.example.org/HostDown",
        "  HTTPS://grafana.example.org/d/x  ",
    ],
)
def test_http_links_with_a_host_are_links(url: str) -> None:
    assert web_link(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "/relative/path",
        "http:///no-host",
        "https://exa\nmple.org/",
        "http://[::1",
        "vbscript:msgbox",
        "runbook.md",
    ],
)
def test_anything_else_is_text(url: str | None) -> None:
    assert web_link(url) is None and not is_web_url(url)
