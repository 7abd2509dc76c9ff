"""Fail2Ban `Ban`/`Unban` lines parsed into IP, jail and time.

Fail2Ban writes `2024-09-01 12:00:00,123 fail2ban.actions [812]: NOTICE  [sshd] Ban 203.0.113.7`; through
syslog or journald the same message arrives behind another prefix (`Sep  1 12:00:00 host fail2ban-server[812]:`),
so the parser looks for the `[jail] Action IP` part anywhere after a `fail2ban` marker. The time is Loki's
entry timestamp when there is one: Fail2Ban's own stamp carries no time zone.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

from shared.incident_context import SecurityEvent

_EVENT = re.compile(
    r"fail2ban.*?\[(?P<jail>[^\]\s]{1,100})\]\s+"
    r"(?P<action>Restore Ban|Increase Ban|Ban|Unban)\s+(?P<ip>[0-9A-Fa-f:.]+)",
    re.IGNORECASE | re.DOTALL,
)
_ACTIONS = {"ban": "ban", "unban": "unban", "restore ban": "ban", "increase ban": "ban"}
MAX_LINE_CHARS = 1000


def parse_fail2ban(line: str, *, at: datetime, host: str = "") -> SecurityEvent | None:
    """The ban or unban a line records, or None when it records neither (or names no valid IP)."""
    match = _EVENT.search(line[:MAX_LINE_CHARS])
    if match is None:
        return None
    try:
        ip = str(ipaddress.ip_address(match["ip"]))
    except ValueError:
        return None
    action = _ACTIONS[match["action"].lower()]
    return SecurityEvent(at=at, action=action, ip=ip, jail=match["jail"], host=host, line=line[:MAX_LINE_CHARS])
