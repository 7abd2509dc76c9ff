"""The short fault drills of `make chaos`, in `make test`: while alerts stream in, kill -9 the correlator,
restart RabbitMQ, restart PostgreSQL, run two correlators, deliver everything twice, mix hostile alerts in; on a
three-node RabbitMQ cluster kill -9 the services' node and restart each node in turn; fail PostgreSQL over to its
standby. Every alert ingest accepted must be stored exactly once, no incident duplicated, no `incident.opened` event
lost."""

from __future__ import annotations

import pytest

from devstack.chaos import DRILLS, run_drill

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", list(DRILLS))
async def test_nothing_is_lost_or_duplicated(name: str) -> None:
    result = await run_drill(DRILLS[name], alerts_per_s=150, seconds=4, hosts=20)
    assert result.sent >= 550, result  # the stream really ran (600 alerts offered)
    assert (result.lost, result.duplicated_incidents, result.lost_events) == (0, 0, 0), result
    assert result.stored == result.sent
    if result.hostile is None:
        assert result.incidents == 20
    else:  # the poison drill: every hostile alert stored (one incident each, on its own host) or refused
        assert result.hostile["held"] == 0 and result.hostile["parked"] == 0, result
        assert result.hostile["stored"] + result.hostile["refused_4xx"] == 50, result
        assert result.incidents == 20 + result.hostile["stored"]
