"""xlsx_cells' fast rows: the sheets they write are byte for byte openpyxl's own, whatever the values, and what
openpyxl refuses they refuse the same way."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils.exceptions import IllegalCharacterError

from shared.reports import xlsx_cells as xc

STAMP = datetime(2026, 11, 1, tzinfo=UTC)
Rows = Sequence[Sequence[Any]]


def openpyxl_sheet(wb: Workbook, title: str) -> Any:
    return wb.create_sheet(title)


def workbook(rows: Callable[[Any], Rows], *, fast: bool, memory: bool = False) -> bytes:
    """Two sheets (so styles registered by the first carry over), saved as the reports save them."""
    wb = xc.write_only_workbook() if fast else Workbook(write_only=True)
    for title in ("One", "Two"):
        ws = xc.memory_sheet(wb, title) if memory else wb.create_sheet(title)
        xc.start_table(ws, [("A", 10), ("B", 10), ("C", 10)], 0)
        for row in rows(ws):
            ws.append(row)
    out = io.BytesIO()
    xc.save(wb, out, STAMP)
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def assert_same(rows: Callable[[Any], Rows]) -> None:
    expected = workbook(rows, fast=False)
    assert members(workbook(rows, fast=True)) == members(expected)
    assert workbook(rows, fast=True) == expected
    assert workbook(rows, fast=True, memory=True) == expected


TRICKY = [
    "plain",
    "",
    " leading and trailing ",
    "tab\tnewline\ncarriage\rreturn",
    "\u00a0non-breaking\u00a0",
    "x < y & z > w \"quoted\" 'single'",
    "]]> <![CDATA[ &amp; &#13;",
    "caf\u00e9 \u65e5\u672c \U0001f600 \u200b \ufeff \ufffd \x7f \x85 \u2028",
    "=SUM(1,2)",
    "=",
    "#N/A",
    "#hashtag",
    "+1",
    "-2",
    "@x",
    "x" * (xc.MAX_CELL_TEXT + 10),
]


def test_tricky_values_are_written_as_openpyxl_writes_them() -> None:
    def rows(ws: Any) -> Rows:
        quoted = WriteOnlyCell(ws, "=quoted")
        quoted.data_type = "s"
        quoted.quotePrefix = True
        bold = WriteOnlyCell(ws, "bold")
        bold.font = Font(bold=True)
        return [
            *([text, None, text] for text in TRICKY),
            [0, -1, 2**53 + 1],
            [10**20, -(10**17), 1.5],
            [0.1, 1e-300, 1 / 3],
            [float("nan"), float("inf"), -0.0],
            [True, False, None],
            [datetime(2026, 11, 1, 3, 4, 5, 678901), datetime(1900, 1, 1), datetime(1900, 3, 1)],
            [date(2026, 11, 1), timedelta(minutes=5), Decimal("1.25")],
            [None, None, None],
            [],
            (value for value in ("a generator", 1, datetime(2026, 1, 1))),
            range(3),
            ("a tuple", quoted, bold),
            [quoted, "after a styled cell", datetime(2026, 1, 2)],
        ]

    assert_same(rows)


def test_what_openpyxl_refuses_is_refused() -> None:
    for value, error in [
        ("bad \x00 text", IllegalCharacterError),
        ("bad \x1f text", IllegalCharacterError),
        (datetime(2026, 1, 1, tzinfo=UTC), TypeError),
        (object(), ValueError),
    ]:
        for fast in (False, True):
            with pytest.raises(error):
                workbook(lambda ws, value=value: [["ok", 1], ["x", value]], fast=fast)


cells = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet=st.sampled_from(" \t\n\r&<>=#\"'\u00e9\U0001f600a")),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 1, 1)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(cells, max_size=6), max_size=6))
def test_any_plain_rows_are_written_as_openpyxl_writes_them(rows: list[list[Any]]) -> None:
    def attempt(fast: bool) -> bytes | type[Exception]:
        try:
            return workbook(lambda ws: rows, fast=fast)
        except (IllegalCharacterError, ValueError) as error:
            return type(error)

    assert attempt(True) == attempt(False)
