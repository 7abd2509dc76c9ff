"""A running web app with two users and tokens, and helpers to seed incidents and read commands."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from pydantic import SecretStr

from services.web.access import hash_password
from services.web.app import build_app
from services.web.appkeys import LIVE
from shared.config import Settings
from tests.conftest import running

RESPONDER_TOKEN = "test-api-token-000001"  # the `settings` fixture's api_token
READONLY_TOKEN = "readonly-token-123"
PASSWORDS = {"alice": "alice-password-1", "victor": "victor-password-1"}


def users_yaml() -> str:
    return (
        "users:\n"
        f"  - name: alice\n    password_hash: '{hash_password(PASSWORDS['alice'])}'\n    role: responder\n"
        f"  - name: victor\n    password_hash: '{hash_password(PASSWORDS['victor'])}'\n    role: viewer\n"
    )


def web_settings(settings: Settings, tmp_path: Path, **changes: Any) -> Settings:
    users = tmp_path / "users.yml"
    users.write_text(users_yaml())
    update: dict[str, Any] = {
        "web_users_file": users,
        "web_readonly_tokens": (SecretStr(READONLY_TOKEN),),
        "web_cookie_secure": False,
    }
    update.update(changes)
    return settings.model_copy(update=update)


@dataclass
class Web:
    url: str
    settings: Settings

    def client(self, token: str | None = None, **headers: str) -> httpx.AsyncClient:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.AsyncClient(base_url=self.url, headers=headers, follow_redirects=False, timeout=30)


@asynccontextmanager
async def serve_web(settings: Settings) -> AsyncIterator[Web]:
    app = build_app(settings)
    async with running(app, settings.web_port) as url:
        await asyncio.wait_for(app[LIVE].ready.wait(), 30)
        yield Web(url, settings)


def form_csrf(html: str) -> str:
    """The CSRF token a page's forms carry."""
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token is not None, "no csrf field on the page"
    return token.group(1)


async def try_login(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    """Submit the login form like a browser, with the token of a freshly fetched form."""
    form = await client.get("/login")
    return await client.post(
        "/login", data={"username": user, "password": password, "csrf": form_csrf(form.text), "next": "/"}
    )


async def login(client: httpx.AsyncClient, user: str) -> str:
    """Log in through the form like a browser; returns the CSRF token of the session's pages."""
    answer = await try_login(client, user, PASSWORDS[user])
    assert answer.status_code == 303, answer.text
    page = await client.get("/")
    assert page.status_code == 200
    return form_csrf(page.text)


async def connect(db_url: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(db_url, autocommit=True, row_factory=dict_row)
