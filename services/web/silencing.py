"""Silence an incident's alerts from Vigil: the web makes (or expires) the silence in Alertmanager, then tells the
correlator, the only writer of incidents, so the incident's timeline and the audit record who did it.

The silence covers the incident's group: an equality matcher on each group label (`alertname` among them when the
rule groups by it). `host`, which the rules derive (correlator rules.group_host: `instance` without its port, else
the `host`, `job` or `alertname` label), becomes a matcher on the label it came from, as the incident's first alert
carries it. Which alerts the silence then holds back, the correlator learns by polling Alertmanager
(services/correlator/silences.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from prometheus_client import Counter

from services.web import commands
from services.web.gate import read_form
from shared.contracts import CommandAction
from shared.matchers import Matcher, MatchType, new_matcher
from shared.problems import problem_response
from shared.readmodel import incidents
from shared.service import DB, SETTINGS

log = logging.getLogger(__name__)

AM_TIMEOUT_S = 10.0
MAX_DURATION = timedelta(days=30)
MAX_SILENCE_COMMENT = 4096
# The first alerts are enough to tell which label a derived `host` came from.
ALERTS_LOOKED_AT = 20
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
ALERTMANAGER_CALLS = Counter(
    "vigil_web_alertmanager_requests_total",
    "Silence requests to Alertmanager, by action and outcome",
    ["action", "outcome"],
)


class Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def parse_duration(value: object) -> timedelta:
    """Seconds (a number, or digits) or Alertmanager's style (`2h`, `1h30m`, `1d`, `90s`); above 0, at most 30 days."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            seconds = float(text)
        else:
            found = _DURATION.fullmatch(text)
            if found and any(found.groups()):
                d, h, m, s = (int(g or 0) for g in found.groups())
                seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if seconds is None or not 0 < seconds <= MAX_DURATION.total_seconds():
        raise Refused(
            problem_response(
                422, 'a duration of more than 0 and at most 30 days: seconds, or e.g. "2h", "1h30m"', field="duration"
            )
        )
    return timedelta(seconds=seconds)


def group_matchers(group_labels: Mapping[str, str], alert_labels: Sequence[Mapping[str, str]]) -> list[Matcher]:
    """Matchers that select the incident's group in Alertmanager (see the module's doc for `host`)."""
    first = alert_labels[0] if alert_labels else {}
    out: list[Matcher] = []
    for name, value in sorted(group_labels.items()):
        if name != "host" or first.get("host", "").strip() == value:
            out.append(new_matcher(MatchType.equal, name, value))
        elif first.get("instance", "").strip():
            # `instance` with or without its port, as rules.host_of strips it.
            out.append(new_matcher(MatchType.regexp, "instance", re.escape(value) + r"(:[0-9]+)?"))
        elif first.get("job", "").strip() == value:
            out.append(new_matcher(MatchType.equal, "job", value))
        else:
            out.append(new_matcher(MatchType.equal, "alertname", value))
    return out


def _api_matcher(m: Matcher) -> dict[str, Any]:
    return {
        "name": m.name,
        "value": m.value,
        "isRegex": m.type.is_regex,
        "isEqual": m.type in (MatchType.equal, MatchType.regexp),
    }


async def _alertmanager(
    urls: Sequence[str], method: str, path: str, action: str, body: object = None
) -> tuple[int, Any]:
    """The first Alertmanager that answers (members of an HA pair share silences); raises Refused with a 502 naming
    it when none does, or answers an error other than 404."""
    if not urls:
        raise Refused(problem_response(503, "no Alertmanager is configured (VIGIL_ALERTMANAGER_API_URLS)"))
    failures = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=AM_TIMEOUT_S)) as http:
        for base in urls:
            url = base.rstrip("/") + path
            try:
                async with http.request(method, url, json=body) as resp:
                    text = await resp.text()
                    if resp.status < 400 or resp.status == 404:
                        ALERTMANAGER_CALLS.labels(action, "ok" if resp.status < 400 else "not_found").inc()
                        return resp.status, (
                            await resp.json(content_type=None)
                        ) if text.strip() and resp.status < 400 else None
                    failures.append(f"{base}: {resp.status} {text.strip()[:300]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(f"{base}: {exc!r}")
    ALERTMANAGER_CALLS.labels(action, "failed").inc()
    log.warning("alertmanager refused or unreachable", extra={"action": action, "errors": failures})
    raise Refused(
        problem_response(
            502, "Alertmanager did not take the request: " + "; ".join(failures), error="alertmanager_error"
        )
    )


async def create_silence(request: web.Request, key: str, duration: object, comment: object) -> dict[str, Any]:
    """Make the silence in Alertmanager and record it; returns what the API answers."""
    try:
        principal = await commands.check_command(request, key, CommandAction.silence)
    except commands.CommandRejected as rejected:
        raise Refused(rejected.response) from None
    length = parse_duration(duration)
    if not isinstance(comment, str) or len(comment) > MAX_SILENCE_COMMENT:
        raise Refused(problem_response(422, f"a string of at most {MAX_SILENCE_COMMENT} characters", field="comment"))
    async with request.app[DB].connection() as conn:
        incident = await incidents.incident(conn, key)
        if incident is None:
            raise Refused(problem_response(404, f"no incident {key}", field="key"))
        first = await incidents.alerts(conn, incident.id, limit=ALERTS_LOOKED_AT)
    matchers = group_matchers(incident.group_labels, [a.labels for a in first])
    if not matchers:
        raise Refused(problem_response(422, "the incident's group has no labels to silence it by", field="key"))
    now = datetime.now(UTC)
    until = now + length
    # Alertmanager refuses a silence without a comment.
    note = comment.strip() or f"Silenced from Vigil for {key}"
    body = {
        "matchers": [_api_matcher(m) for m in matchers],
        "startsAt": now.isoformat(),
        "endsAt": until.isoformat(),
        "createdBy": principal.name,
        "comment": note,
    }
    _, answer = await _alertmanager(
        request.app[SETTINGS].alertmanager_api_urls, "POST", "/api/v2/silences", "create", body
    )
    silence_id = str((answer or {}).get("silenceID", ""))
    command_id = await _record(request, key, CommandAction.silence, note, silence_id, until)
    return {
        "command_id": str(command_id),
        "key": key,
        "action": "silence",
        "silence_id": silence_id,
        "until": until.isoformat().replace("+00:00", "Z"),
        "matchers": [str(m) for m in matchers],
    }


async def expire_silence(request: web.Request, key: str, silence_id: str) -> dict[str, Any]:
    try:
        await commands.check_command(request, key, CommandAction.unsilence)
    except commands.CommandRejected as rejected:
        raise Refused(rejected.response) from None
    if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", silence_id):
        raise Refused(problem_response(404, f"no silence {silence_id}", field="id"))
    async with request.app[DB].connection() as conn:
        found = await incidents.whole(conn, key)
    if found is None or not silence_of(found, silence_id):
        # A responder expires this incident's silences here; any other is Alertmanager's business.
        raise Refused(problem_response(404, f"{key} has no silence {silence_id}", field="id"))
    urls = request.app[SETTINGS].alertmanager_api_urls
    status, _ = await _alertmanager(urls, "DELETE", f"/api/v2/silence/{quote(silence_id)}", "expire")
    if status == 404:
        raise Refused(problem_response(404, f"Alertmanager has no silence {silence_id}", field="id"))
    command_id = await _record(request, key, CommandAction.unsilence, "", silence_id, None)
    return {"command_id": str(command_id), "key": key, "action": "unsilence", "silence_id": silence_id}


def silence_of(found: incidents.Whole, silence_id: str) -> bool:
    """Whether the silence is the incident's: made from Vigil for it (its timeline says so) or holding back one of
    its alerts."""
    return any(t.detail.get("silence_id") == silence_id for t in found.timeline) or any(
        silence_id in a.silenced_by for a in found.alerts
    )


async def _record(
    request: web.Request, key: str, action: CommandAction, comment: str, silence_id: str, until: datetime | None
) -> Any:
    try:
        return await commands.send_command(request, key, action, comment, silence_id=silence_id, until=until)
    except commands.CommandRejected as rejected:
        # The silence is in Alertmanager either way; only its record in Vigil's timeline is missing.
        log.warning("silence not recorded", extra={"silence_id": silence_id, "status": rejected.response.status})
        raise Refused(rejected.response) from None


# --- routes -------------------------------------------------------------------------------------------------------


async def api_silence(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    try:
        body = await _json(request)
        answer = await create_silence(request, key, body.get("duration"), body.get("comment", ""))
    except Refused as refused:
        return refused.response
    return web.json_response(answer, status=201)


async def api_unsilence(request: web.Request) -> web.Response:
    key, silence_id = request.match_info["key"], request.match_info["id"]
    try:
        answer = await expire_silence(request, key, silence_id)
    except Refused as refused:
        return refused.response
    return web.json_response(answer, status=202)


async def page_silence(request: web.Request) -> web.StreamResponse:
    """The incident page's form: back to the page, which says what happened."""
    key = request.match_info["key"]
    form = await read_form(request)
    try:
        await create_silence(request, key, str(form.get("duration", "")), str(form.get("comment", "")))
    except Refused as refused:
        if refused.response.status == 404:
            return refused.response
        raise web.HTTPSeeOther(f"/incidents/{quote(key)}?failed={refused.response.status}") from None
    raise web.HTTPSeeOther(f"/incidents/{quote(key)}?sent=silence")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(problem_response(422, "the body must be a JSON object", field="body"))
    return body


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/incidents/{key}/silence", api_silence)
    app.router.add_delete("/api/v1/incidents/{key}/silence/{id}", api_unsilence)
    app.router.add_post("/incidents/{key}/silence", page_silence)
