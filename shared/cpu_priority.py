"""Background services give the CPU up to the alert path.

The enricher and the reporter work through a backlog: in an alert storm they would take every cycle they can
get, and ingest and the correlator, whose latency is what responders feel, would slow down with them. Their
work coalesces (an incident is re-enriched and re-rendered at most once per refresh interval, and a stale event
is skipped), so when they get less CPU they simply catch up later with fewer, larger steps.

Linux schedules by "autogroup" when it is on: every session (setsid) is a group, groups share the CPU by weight,
and a process's nice value only counts against processes of its own session. `make run` starts each service in
its own session, so the group's nice value is the one that matters; it is set only when the process leads its
session, so a service started by hand from a shell never lowers the priority of that shell and its other jobs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")


def lower_priority(nice: int) -> None:
    """Raise this process's nice value to `nice` (never lowers it) and, when it leads its own session, its
    autogroup's too. 0 leaves the process as it is."""
    if nice <= 0:
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    if os.getsid(0) != os.getpid() or not AUTOGROUP.exists():
        return
    # The kernel lets an unprivileged process set its group's nice once per 100 ms (EAGAIN otherwise): services
    # started together can collide, so try a few times.
    for _ in range(10):
        try:
            AUTOGROUP.write_text(str(nice))
            return
        except BlockingIOError:
            time.sleep(0.11)
        except OSError as exc:
            log.warning("autogroup priority not set", extra={"error": str(exc)})
            return
    log.warning("autogroup priority not set", extra={"error": "the kernel kept answering EAGAIN"})
