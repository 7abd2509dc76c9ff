"""Access control for every request: who is asking (API token, session cookie, trusted proxy header, or
anonymous when configured), login redirects for pages, 401 for the API, CSRF checks on forms, and a 400 for
credentials that are not text at all."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from services.web import sessions
from services.web.access import (
    IPAddress,
    IPNetwork,
    PasswordChecks,
    Principal,
    Role,
    Via,
    bearer_token,
    client_address,
    is_trusted,
    malformed_header,
    parse_address,
    parse_networks,
    same_secret,
)
from services.web.appkeys import TOKENS, USERS
from shared.config import ConfigError, Settings
from shared.problems import problem_response
from shared.service import DB, SETTINGS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL = web.RequestKey("principal", Principal)
NEW_SESSION = web.RequestKey("new_session", str)
# Reachable without credentials: the login form, assets, probes, and the API's own description.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = {"/login", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/favicon.ico"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"
# Headers that carry credentials or tokens: one that is not text is refused before anything reads it.
CREDENTIAL_HEADERS = ("Authorization", "Cookie", CSRF_HEADER)
UNTRUSTED_HEADER_LOG_EVERY_S = 60.0


@dataclass
class OncePer:
    """Says yes at most once per `interval_s`: a warning someone can provoke at will is logged, not repeated."""

    interval_s: float
    last: float | None = None

    def due(self, now: float) -> bool:
        if self.last is not None and now - self.last < self.interval_s:
            return False
        self.last = now
        return True


TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[IPNetwork, ...])
UNTRUSTED_HEADER_LOG = web.AppKey("untrusted_header_log", OncePer)
PASSWORD_CHECKS = web.AppKey("password_checks", PasswordChecks)


def setup_access(app: web.Application, settings: Settings) -> None:
    """What the gate and the login need, from the settings; refuses a trusted header nobody can be trusted to set."""
    if settings.web_trusted_header and not settings.web_trusted_proxies:
        raise ConfigError(
            "vigil: invalid configuration\n"
            f"  VIGIL_WEB_TRUSTED_PROXIES: required with VIGIL_WEB_TRUSTED_HEADER ({settings.web_trusted_header}): "
            "the addresses of the proxies allowed to set it (from anywhere else anyone could claim any user)"
        )
    app[TRUSTED_PROXIES] = parse_networks(settings.web_trusted_proxies)
    app[UNTRUSTED_HEADER_LOG] = OncePer(UNTRUSTED_HEADER_LOG_EVERY_S)
    app[PASSWORD_CHECKS] = PasswordChecks(settings.web_login_concurrency, settings.web_login_wait_s)


class MalformedRequest(Exception):
    """A request no handler can make sense of (a credential that is not text, a form that is not UTF-8)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def malformed_response(request: web.Request, exc: MalformedRequest) -> web.Response:
    if is_api(request):
        return problem_response(400, exc.message, field=exc.field)
    return web.Response(status=400, text=f"Bad request: {exc.message}.\n", content_type="text/plain")


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The request's form; `MalformedRequest` for one that is not text in its charset (aiohttp raises on it)."""
    try:
        return await request.post()
    except web.RequestPayloadError as exc:
        raise MalformedRequest(f"unreadable body: {exc}", "body") from None
    except (ValueError, LookupError):
        raise MalformedRequest("the form is not text in its charset (UTF-8 unless it says otherwise)", "body") from None


def peer_is_trusted(request: web.Request) -> bool:
    proxies = request.app[TRUSTED_PROXIES]
    return request.remote is not None and is_trusted(parse_address(request.remote), proxies)


def client_of(request: web.Request) -> IPAddress:
    """The client's address: the peer, or what trusted proxies say in X-Forwarded-For (access.client_address)."""
    if request.remote is None:
        raise ValueError("a request without a peer address: the web serves TCP only")
    forwarded = request.headers.getall("X-Forwarded-For", [])
    proxies = request.app[TRUSTED_PROXIES]
    return client_address(request.remote, forwarded, proxies)


def proxied_user(request: web.Request, header: str) -> str | None:
    """The user the trusted proxy names, if the request really comes from a trusted proxy."""
    name = request.headers.get(header, "").strip()
    if not name:
        return None
    if peer_is_trusted(request):
        return name
    if request.app[UNTRUSTED_HEADER_LOG].due(time.monotonic()):
        log.warning(
            "ignored the trusted user header from an address not in VIGIL_WEB_TRUSTED_PROXIES (logged once a minute)",
            extra={"header": header, "peer": request.remote},
        )
    return None


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/events"


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=sessions.SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS].web_cookie_secure,
    )


async def resolve(request: web.Request) -> Principal | None:
    app = request.app
    settings = app[SETTINGS]
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        token = bearer_token(authorization)
        return app[TOKENS].principal(token) if token else None
    proxied = proxied_user(request, settings.web_trusted_header) if settings.web_trusted_header else None
    cookie = request.cookies.get(sessions.COOKIE)
    session = await sessions.find(app[DB], cookie) if cookie else None
    users = app[USERS]
    if session is not None and session.method == "password" and session.username in users and proxied is None:
        return Principal(session.username, users[session.username].role, Via.session, session.csrf_token)
    if proxied is not None:
        role = users[proxied].role if proxied in users else Role.viewer
        if session is not None and session.method == "proxy" and session.username == proxied:
            return Principal(proxied, role, Via.proxy, session.csrf_token)
        if is_api(request):
            # No session for API calls through the proxy (a row per request otherwise): they may read; acting
            # needs a page's CSRF token, like any browser request.
            return Principal(proxied, role, Via.proxy, None)
        # A session of its own gives the proxied person a CSRF token for the dashboard's forms.
        session = await sessions.create(app[DB], proxied, "proxy")
        request[NEW_SESSION] = session.token
        return Principal(proxied, role, Via.proxy, session.csrf_token)
    if settings.web_anonymous_read:
        return Principal("anonymous", Role.viewer, Via.anonymous)
    return None


def unauthenticated(request: web.Request) -> web.StreamResponse:
    if is_api(request) or request.headers.get("Authorization") is not None:
        response = problem_response(401, "authentication required: a bearer token or a login session")
        response.headers["WWW-Authenticate"] = 'Bearer realm="vigil"'
        return response
    target = request.path_qs if request.method in SAFE_METHODS else "/"
    return web.Response(status=302, headers={"Location": "/login?next=" + quote(target, safe="")})


def malformed_headers(request: web.Request) -> MalformedRequest | None:
    names: tuple[str, ...] = CREDENTIAL_HEADERS
    trusted_header = request.app[SETTINGS].web_trusted_header
    if trusted_header:
        names = (*names, trusted_header)
    for name in names:
        if any(malformed_header(value) for value in request.headers.getall(name, [])):
            return MalformedRequest(f"the {name} header holds bytes that are not UTF-8, or control characters", name)
    return None


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    malformed = malformed_headers(request)
    if malformed is not None:
        return malformed_response(request, malformed)
    try:
        return await admit(request, handler)
    except MalformedRequest as exc:
        return malformed_response(request, exc)


async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    principal = await resolve(request)
    if principal is None:
        return unauthenticated(request)
    if principal.via is Via.anonymous and request.method not in SAFE_METHODS:
        return unauthenticated(request)
    request[PRINCIPAL] = principal
    if request.method not in SAFE_METHODS and principal.via in (Via.session, Via.proxy):
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = str((await read_form(request)).get("csrf", "")) or None
        if not same_secret(sent, principal.csrf_token):
            return problem_response(403, "missing or wrong CSRF token; reload the page and try again", field="csrf")
    response = await handler(request)
    if NEW_SESSION in request:
        set_session_cookie(response, request, request[NEW_SESSION])
    return response
