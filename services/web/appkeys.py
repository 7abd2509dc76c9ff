"""Typed keys of what the web app keeps for its lifetime."""

from __future__ import annotations

import jinja2
from aiohttp import web

from services.web.access import TokenBook, User
from services.web.live import LiveHub

USERS = web.AppKey("users", dict[str, User])
TOKENS = web.AppKey("tokens", TokenBook)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
LIVE = web.AppKey("live", LiveHub)
