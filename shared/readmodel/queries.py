"""The read model's named SQL (queries.sql), read once."""

from pathlib import Path

from shared.db import Queries

QUERIES = Queries(Path(__file__).with_name("queries.sql"))
