"""A background service lowers its own priority, and its autogroup's only when the group is its own session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.running_stack import priority

REPORT = (
    "import os, sys; from shared.cpu_priority import lower_priority; lower_priority(int(sys.argv[1])); "
    "print(os.getpriority(os.PRIO_PROCESS, 0), (open('/proc/self/autogroup').read().split() or ['None'])[-1]); "
    "sys.stdout.flush()"
)
needs_autogroup = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="kernel without autogroup")


def run(nice: int, *, own_session: bool) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", REPORT, str(nice)],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=own_session,
    )
    return out.stdout.split()


@needs_autogroup
def test_a_session_leader_lowers_its_group() -> None:
    assert run(7, own_session=True) == ["7", "7"]


@needs_autogroup
def test_a_process_in_someone_elses_session_leaves_the_group_alone() -> None:
    ours = priority(int(Path("/proc/self/stat").read_text().split()[0]))[1]
    assert run(7, own_session=False) == ["7", str(ours)]


def test_zero_changes_nothing() -> None:
    assert run(0, own_session=True)[0] == str(os.getpriority(os.PRIO_PROCESS, 0))
