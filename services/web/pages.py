"""The server-rendered dashboard: incident list, incident page, audit page, login and logout."""

from __future__ import annotations

import logging
import math
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from prometheus_client import Counter

from services.web import lockout, sessions, store
from services.web.access import MAX_NAME, PasswordChecksBusy, Principal, has_control_chars, safe_next, same_secret
from services.web.appkeys import TEMPLATES, USERS
from services.web.commands import CommandRejected, send_command
from services.web.gate import PASSWORD_CHECKS, PRINCIPAL, client_of, principal_of, read_form, set_session_cookie
from services.web.listing import STATES, QueryError, encode_cursor, parse_list_query, query_string, unknown_params
from services.web.presentation import incident_page
from shared.contracts import CommandAction
from shared.service import DB, SETTINGS

log = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "vigil_login_csrf"
LOGINS = Counter("vigil_web_logins_total", "Login form submissions, by outcome", ["outcome"])
# locked: the name has too many failures; locked_address: the client address has; busy: no password-check slot.
for _outcome in ("ok", "wrong", "locked", "locked_address", "busy"):
    LOGINS.labels(_outcome)
# The incident page lists this many alerts (all with ?alerts=all) and this many entries of each per-alert
# timeline kind: at 3 a.m. on a phone, 10,000 rows are a summary's job.
PAGE_ALERTS = 500
TIMELINE_PER_KIND = 50
FORM_ACTIONS = {
    "ack": CommandAction.acknowledge,
    "resolve": CommandAction.resolve,
    "reopen": CommandAction.reopen,
    "comment": CommandAction.comment,
}
SENT_WORDS = {
    "acknowledge": "Acknowledgement",
    "resolve": "Resolution",
    "reopen": "Reopening",
    "comment": "Comment",
    "silence": "Silence",
}
FAILURE_WORDS = {
    "403": "You may read incidents but not change them.",
    "404": "That incident does not exist.",
    "422": "A comment needs some text; a silence, a duration such as 2h.",
    "502": "Alertmanager did not take the silence.",
    "503": "The message broker is unreachable; nothing was sent. Try again in a moment.",
}


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env: jinja2.Environment = request.app[TEMPLATES]
    principal: Principal | None = request.get(PRINCIPAL)
    html = env.get_template(template).render(principal=principal, path=request.path, **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def incident_list(request: web.Request) -> web.Response:
    params = {name: request.query.getall(name) for name in request.query}
    for name in unknown_params(params):
        params.pop(name)
    try:
        f = parse_list_query(params)
        page = await store.list_incidents(request.app[DB], f)
    except QueryError as exc:
        return render(
            request, "list.html", status=422, error=exc, filters=parse_list_query({}), page=None, states=STATES
        )
    next_qs = query_string(f, cursor=encode_cursor(page.next_cursor)) if page.next_cursor else None
    state_links = {state: query_string(f, state=state) for state in STATES}
    return render(
        request,
        "list.html",
        error=None,
        filters=f,
        page=page,
        states=STATES,
        next_qs=next_qs,
        state_links=state_links,
        all_states_qs=query_string(f, state=None),
        first_qs=query_string(f),
        first_page=f.cursor is None,
    )


async def incident(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    show_all = request.query.get("alerts") == "all"
    detail = (
        await store.incident_page_detail(
            request.app[DB], key, alert_limit=None if show_all else PAGE_ALERTS, per_kind=TIMELINE_PER_KIND
        )
        if store.KEY_PATTERN.match(key)
        else None
    )
    if detail is None:
        return render(request, "not_found.html", status=404, key=key)
    view = incident_page(
        detail.incident,
        detail.alerts,
        detail.alert_summary,
        detail.alert_starts,
        detail.timeline,
        detail.timeline_counts,
        detail.enrichment,
        datetime.now(UTC),
        detail.similar,
    )
    sent = request.query.get("sent")
    failed = request.query.get("failed")
    return render(
        request,
        "incident.html",
        **view,
        sent=SENT_WORDS.get(sent or ""),
        failure=FAILURE_WORDS.get(failed or ""),
        csrf=principal_of(request).csrf_token,
    )


async def incident_form(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    action = FORM_ACTIONS[request.match_info["action"]]
    form = await read_form(request)
    comment = str(form.get("comment", ""))
    try:
        await send_command(request, key, action, comment)
    except CommandRejected as rejected:
        if rejected.response.status == 404 and not store.KEY_PATTERN.match(key):
            return rejected.response
        return see_other(f"/incidents/{quote(key)}?failed={rejected.response.status}")
    return see_other(f"/incidents/{quote(key)}?sent={action.value}")


async def audit(request: web.Request) -> web.Response:
    return render(request, "audit.html")


def login_page(
    request: web.Request, token: str, *, next: str, status: int = 200, error: str | None = None
) -> web.Response:
    """The login form, with `token` in it and in its cookie (login CSRF: see `login`)."""
    response = render(request, "login.html", status=status, csrf=token, next=next, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=request.app[SETTINGS].web_cookie_secure,
    )
    return response


async def login_form(request: web.Request) -> web.Response:
    # Reuse the browser's token: a second tab (or a favicon request redirected here) must not invalidate the
    # form already on screen.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    return login_page(request, token, next=safe_next(request.query.get("next")))


def wrong_login(request: web.Request, target: str) -> web.Response:
    LOGINS.labels("wrong").inc()
    return login_page(request, secrets.token_urlsafe(24), next=target, status=401, error="Wrong user name or password.")


def refused_login(request: web.Request, target: str, refused: lockout.Refusal, name: str, address: str) -> web.Response:
    minutes = -(-refused.retry_after_s // 60)
    wait = f"Try again in {minutes} minute{'s' * (minutes > 1)}."
    if refused.scope is lockout.Scope.name:
        LOGINS.labels("locked").inc()
        error = f"Too many failed logins for this user name. {wait}"
    else:
        LOGINS.labels("locked_address").inc()
        error = f"Too many failed logins from your network address. {wait}"
    log.warning(
        "login refused: too many failures",
        extra={
            "scope": refused.scope.value,
            "username": name,
            "address": address,
            "retry_after_s": refused.retry_after_s,
        },
    )
    response = login_page(request, secrets.token_urlsafe(24), next=target, status=429, error=error)
    response.headers["Retry-After"] = str(refused.retry_after_s)
    return response


def busy_login(request: web.Request, target: str) -> web.Response:
    # Counted, not logged: a flood of logins would flood the log too.
    LOGINS.labels("busy").inc()
    wait_s = math.ceil(request.app[PASSWORD_CHECKS].wait_s)
    response = login_page(
        request,
        secrets.token_urlsafe(24),
        next=target,
        status=503,
        error="Too many logins are being checked right now. Try again in a few seconds.",
    )
    response.headers["Retry-After"] = str(wait_s)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    target = safe_next(str(form.get("next", "")))
    # Login CSRF: the form's token must match the cookie set with the form, so another site cannot log a
    # browser in as someone else.
    if not same_secret(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return render(request, "login.html", status=403, csrf="", next=target, error="The form expired; reload it.")
    name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    # No user's name is that long or holds control characters: refused at once and not stored.
    if not (name and password) or len(name) > MAX_NAME or has_control_chars(name):
        return wrong_login(request, target)
    settings = request.app[SETTINGS]
    name_limit = lockout.Limit(settings.web_login_max_failures, settings.web_login_lockout_s)
    address_limit = lockout.Limit(settings.web_login_max_failures_per_address, settings.web_login_lockout_s)
    address = lockout.address_key(client_of(request))
    try:
        async with request.app[PASSWORD_CHECKS].slot() as verify:
            refused = await lockout.begin(
                request.app[DB], name, name_limit, address=address, address_limit=address_limit
            )
            if refused is not None:
                return refused_login(request, target, refused, name, address)
            user = await verify(request.app[USERS], name, password)
    except PasswordChecksBusy:
        return busy_login(request, target)
    if user is None:
        return wrong_login(request, target)
    LOGINS.labels("ok").inc()
    await lockout.succeeded(request.app[DB], name)
    session = await sessions.create(request.app[DB], user.name, "password")
    response = see_other(target)
    set_session_cookie(response, request, session.token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(sessions.COOKIE)
    if cookie:
        await sessions.delete(request.app[DB], cookie)
    response = see_other("/login")
    response.del_cookie(sessions.COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", incident_list)
    app.router.add_get("/incidents/{key}", incident)
    app.router.add_post("/incidents/{key}/{action:ack|resolve|reopen|comment}", incident_form)
    app.router.add_get("/audit", audit)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
