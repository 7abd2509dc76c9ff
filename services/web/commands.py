"""Acknowledge, resolve, reopen, comment: sent to the correlator, the only writer of incidents, as commands.

The web answers once the broker has confirmed the command; the change itself arrives later as an
`incident.*` event (seen live through SSE) when the correlator has applied it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from aiohttp import web
from prometheus_client import Counter

from services.web import store
from services.web.access import Principal
from services.web.gate import principal_of
from shared.contracts import COMMANDS_EXCHANGE, CommandAction, Envelope, IncidentCommand, command_type
from shared.jsonlog import incident_key
from shared.messaging import Broker, BrokerUnavailable
from shared.problems import problem_response
from shared.service import BROKER, DB

log = logging.getLogger(__name__)

MAX_COMMENT = 65_536
SENT = Counter(
    "vigil_web_commands_total", "Commands sent to the correlator, by action and outcome", ["action", "outcome"]
)


def build_command(
    key: str,
    action: CommandAction,
    actor: str,
    comment: str = "",
    *,
    silence_id: str = "",
    until: datetime | None = None,
) -> Envelope[IncidentCommand]:
    data = IncidentCommand(key=key, action=action, actor=actor, comment=comment, silence_id=silence_id, until=until)
    return Envelope(type=command_type(action.value), producer="web", data=data)


async def send(broker: Broker, envelope: Envelope[IncidentCommand]) -> uuid.UUID:
    """Publish with confirms; raises BrokerUnavailable when the broker did not take it."""
    action = envelope.data.action.value
    try:
        await broker.publish(COMMANDS_EXCHANGE, envelope.type, envelope, mandatory=True)
    except BrokerUnavailable:
        SENT.labels(action, "broker_unavailable").inc()
        raise
    SENT.labels(action, "sent").inc()
    return envelope.id


class CommandRejected(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def check_command(request: web.Request, key: str, action: CommandAction) -> Principal:
    """The caller, if they may act and the incident exists; raises CommandRejected."""
    principal = principal_of(request)
    if not principal.can_act:
        raise CommandRejected(problem_response(403, f"{principal.name} may read but not {action.value} incidents"))
    if not store.KEY_PATTERN.match(key) or await store.incident(request.app[DB], key) is None:
        raise CommandRejected(problem_response(404, f"no incident {key}", field="key"))
    return principal


async def send_command(
    request: web.Request,
    key: str,
    action: CommandAction,
    comment: str = "",
    *,
    silence_id: str = "",
    until: datetime | None = None,
) -> uuid.UUID:
    """Checks the caller may act and the incident exists, then sends the command; raises CommandRejected."""
    principal = await check_command(request, key, action)
    if action is CommandAction.comment and not comment.strip():
        raise CommandRejected(problem_response(422, "a comment needs some text", field="comment"))
    if len(comment) > MAX_COMMENT:
        raise CommandRejected(problem_response(422, f"longer than {MAX_COMMENT} characters", field="comment"))
    envelope = build_command(key, action, principal.name, comment, silence_id=silence_id, until=until)
    token = incident_key.set(key)
    try:
        await send(request.app[BROKER], envelope)
    except BrokerUnavailable as exc:
        log.warning("command not sent", extra={"action": action.value, "error": str(exc)})
        raise CommandRejected(problem_response(503, "the message broker did not take the command; try again")) from None
    finally:
        incident_key.reset(token)
    log.info("command sent", extra={"action": action.value, "actor": principal.name, "command_id": str(envelope.id)})
    return envelope.id
