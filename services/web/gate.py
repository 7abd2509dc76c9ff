"""Access control for every request: who is asking (API token, session cookie, trusted proxy header, or
anonymous when configured), login redirects for pages, 401 for the API, and CSRF checks on forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from services.web import sessions
from services.web.access import Principal, Role, Via, bearer_token, same_secret
from services.web.appkeys import TOKENS, USERS
from shared.problems import problem_response
from shared.service import DB, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL = web.RequestKey("principal", Principal)
NEW_SESSION = web.RequestKey("new_session", str)
# Reachable without credentials: the login form, assets, probes, and the API's own description.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = {"/login", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/favicon.ico"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


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
    proxied = None
    if settings.web_trusted_header:
        proxied = request.headers.get(settings.web_trusted_header, "").strip() or None
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


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    principal = await resolve(request)
    if principal is None:
        return unauthenticated(request)
    if principal.via is Via.anonymous and request.method not in SAFE_METHODS:
        return unauthenticated(request)
    request[PRINCIPAL] = principal
    if request.method not in SAFE_METHODS and principal.via in (Via.session, Via.proxy):
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = str((await request.post()).get("csrf", "")) or None
        if not same_secret(sent, principal.csrf_token):
            return problem_response(403, "missing or wrong CSRF token; reload the page and try again", field="csrf")
    response = await handler(request)
    if NEW_SESSION in request:
        set_session_cookie(response, request, request[NEW_SESSION])
    return response
