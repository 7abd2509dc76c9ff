"""Acknowledge, resolve, reopen, comment: sent to the correlator, the only writer of incidents, as commands.

The web answers once the broker has confirmed the command; the change itself arrives later as an
`incident.*` event (seen live through SSE) when the correlator has applied it.
"""

from __future__ import annotations

import uuid

from prometheus_client import Counter

from shared.contracts import COMMANDS_EXCHANGE, CommandAction, Envelope, IncidentCommand
from shared.messaging import Broker, BrokerUnavailable

MAX_COMMENT = 65_536
SENT = Counter(
    "vigil_web_commands_total", "Commands sent to the correlator, by action and outcome", ["action", "outcome"]
)


def build_command(key: str, action: CommandAction, actor: str, comment: str = "") -> Envelope[IncidentCommand]:
    data = IncidentCommand(key=key, action=action, actor=actor, comment=comment)
    return Envelope(type=f"command.{action.value}", producer="web", data=data)


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
