"""Cells for openpyxl's write-only sheets: real Excel types, and text from alerts that can never become a formula.

openpyxl turns any string that starts with `=` into a formula and `#N/A`-like strings into error values. Text from an
alert is therefore written as an explicit string cell; text starting with a character a spreadsheet would read as a
formula when the cell is edited or exported to CSV (`=`, `+`, `-`, `@`, tab, CR) also gets Excel's quote prefix.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO, cast

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet._writer import WorksheetWriter
from openpyxl.worksheet.filters import AutoFilter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

if TYPE_CHECKING:
    from _typeshed import SizedBuffer

MAX_CELL_TEXT = 32_767  # Excel's limit per cell
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# XML 1.0 cannot carry these control characters; openpyxl refuses them.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
BOLD = Font(bold=True)


def clean_text(value: object) -> str:
    text = _ILLEGAL.sub("\ufffd", str(value))
    if len(text) > MAX_CELL_TEXT:
        text = text[: MAX_CELL_TEXT - 1] + "\u2026"
    return text


def text(ws: WriteOnlyWorksheet, value: object) -> Cell | str | None:
    """Untrusted text as a string cell; a plain `str` when openpyxl would store it as a string anyway (faster)."""
    if value is None or value == "":
        return None
    raw = clean_text(value)
    if not raw.startswith(FORMULA_STARTS) and not raw.startswith("#"):
        return raw
    cell = WriteOnlyCell(ws, raw)
    cell.data_type = "s"
    if raw.startswith(FORMULA_STARTS):
        cell.quotePrefix = True
    return cell


def when(ws: WriteOnlyWorksheet, value: datetime | None) -> datetime | None:
    """A real Excel date-time in UTC (Excel has no time zones: the header says UTC).

    openpyxl gives a datetime its date format (yyyy-mm-dd h:mm:ss) by itself; no styled cell is needed.
    """
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def header(ws: WriteOnlyWorksheet, names: Sequence[str]) -> list[Cell]:
    cells = []
    for name in names:
        cell = WriteOnlyCell(ws, name)
        cell.font = BOLD
        cells.append(cell)
    return cells


def layout(ws: WriteOnlyWorksheet) -> Worksheet:
    """The sheet's layout attributes (column widths, autofilter, charts): a write-only sheet has a Worksheet's, set
    up by openpyxl's shared `_setup`, but the type stubs do not declare them."""
    return cast(Worksheet, ws)


def start_table(ws: WriteOnlyWorksheet, columns: Sequence[tuple[str, float]], rows: int) -> None:
    """Widths, a frozen header row and an autofilter over `rows` data rows; then writes the header.

    Write-only sheets need all of this before the first row is appended.
    """
    for index, (_, width) in enumerate(columns, 1):
        layout(ws).column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A2"
    last = get_column_letter(len(columns))
    layout(ws).auto_filter = AutoFilter(ref=f"A1:{last}{rows + 1}")
    ws.append(header(ws, [name for name, _ in columns]))


def line_chart(
    ws: WriteOnlyWorksheet, title: str, time_col: int, value_col: int, first_row: int, last_row: int, unit: str
) -> LineChart:
    """A native line chart over a block of (time, value) rows.

    The time axis is a category axis labelled with the times, not an OOXML date axis: a date axis counts in whole
    days at the finest, so Excel would stack every point of a one-hour incident on one x position. The enricher's
    points are evenly spaced (downsampled to a fixed step), so categories keep the shape true.
    """
    chart = LineChart()
    chart.title = clean_text(title)[:200]
    chart.style = 2
    chart.height = 7.5
    chart.width = 18
    chart.legend = None
    chart.y_axis.title = clean_text(unit)[:50] if unit else None
    chart.y_axis.delete = False
    chart.x_axis.title = "UTC"
    chart.x_axis.number_format = "mm-dd hh:mm"
    chart.x_axis.delete = False
    chart.x_axis.axPos = "b"
    values = Reference(ws, min_col=value_col, min_row=first_row, max_row=last_row)
    chart.add_data(values, titles_from_data=False)
    chart.set_categories(Reference(ws, min_col=time_col, min_row=first_row, max_row=last_row))
    return chart


class _MemorySheetWriter(WorksheetWriter):
    """openpyxl's write-only sheet writer, into memory instead of a temporary file it deletes again."""

    def __init__(self, ws: WriteOnlyWorksheet) -> None:
        super().__init__(ws, out=io.BytesIO())

    def cleanup(self) -> None:
        pass  # nothing on disk


class _MemorySheet(WriteOnlyWorksheet):
    _writer: WorksheetWriter | None

    # openpyxl creates its writer lazily at the first row, after widths and panes are set: so do we.
    def _get_writer(self) -> None:
        if self._writer is None:
            self._writer = _MemorySheetWriter(self)
            self._writer.write_top()


def memory_sheet(wb: Workbook, title: str) -> WriteOnlyWorksheet:
    """A write-only sheet buffered in memory, for workbooks of bounded size (an incident report).

    A write-only sheet normally streams into a temporary file, which keeps the 100,000-incident audit's memory flat
    but costs a file created, written, read back and deleted per sheet: ten per incident report, rendered again
    whenever the incident changes. The audit keeps openpyxl's files.
    """
    ws = _MemorySheet(parent=wb, title=title)
    wb._add_sheet(ws)  # type: ignore[attr-defined]  # what Workbook.create_sheet does, with our sheet class
    return ws


class _StampedZip(zipfile.ZipFile):
    """A zip whose members all carry one fixed time: openpyxl would stamp them with the current time."""

    stamp = (2000, 1, 1, 0, 0, 0)

    def writestr(
        self,
        zinfo_or_arcname: str | zipfile.ZipInfo,
        data: SizedBuffer | str,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = self._info(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(
        self,
        filename: str | os.PathLike[str] | io.BytesIO,
        arcname: str | os.PathLike[str] | None = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        if isinstance(filename, io.BytesIO):  # a memory_sheet
            self.writestr(self._info(str(arcname)), filename.getvalue())
            return
        # Streams the file (a write-only sheet can be large) instead of reading it into memory.
        info = self._info(str(arcname or filename))
        with open(filename, "rb") as source, self.open(info, "w") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        return info


def save(wb: Workbook, out: BinaryIO, stamp: datetime) -> None:
    """Save without openpyxl's clock: document properties and zip entries carry `stamp` (a time from the data)."""
    naive = naive_utc(stamp) or datetime(2000, 1, 1)
    wb.properties.created = naive
    wb.properties.modified = naive
    with _StampedZip(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(wb, archive).save()
