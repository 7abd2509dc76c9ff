"""The connections the report tests seed and read with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Seeds the test's database (autocommit: each statement stands alone)."""
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as connection:
        yield connection


@pytest.fixture
def reader(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The blocking connection an export reads with (in the web, in a thread of its own)."""
    with psycopg.connect(db_url) as connection:
        yield connection
