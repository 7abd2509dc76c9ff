"""A primary streaming to a hot standby, started for one test and stopped after it, for the failover tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.postgres import Postgres
from devstack.throwaway import new_replicated_postgres, temp_root


def processes_using(root: Path) -> list[str]:
    """Command lines of the live processes that name a path under `root`: our servers, if any were left."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if str(root) in argv:
            found.append(f"{cmdline.parent.name}: {argv}")
    return found


@pytest.fixture
def replicated() -> Iterator[tuple[Postgres, Postgres]]:
    root = temp_root("vigil-standby-test-")
    try:
        primary, standby = new_replicated_postgres(root)
        try:
            yield primary, standby
        finally:
            standby.stop()
            primary.stop()
        # runuser, as root, outlives its postmaster by a moment.
        deadline = time.monotonic() + 5
        while processes_using(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_using(root) == []
    finally:
        # Not ignore_errors: what a killed primary leaves behind must not get in the way of removing it.
        shutil.rmtree(root)
