"""Cells for openpyxl's write-only sheets: real Excel types, and text from alerts that can never become a formula.

openpyxl turns any string that starts with `=` into a formula and `#N/A`-like strings into error values. Text from an
alert is therefore written as an explicit string cell; text starting with a character a spreadsheet would read as a
formula when the cell is edited or exported to CSV (`=`, `+`, `-`, `@`, tab, CR) also gets Excel's quote prefix.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Generator, Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from openpyxl import LXML, Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
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


class _SheetWriter(WorksheetWriter):
    """openpyxl's write-only sheet writer, into a file object of ours (an anonymous temporary file, or memory) rather
    than a file it names: `_FastSheet` writes its rows' XML into that file object itself, between lxml's writes."""

    out: IO[bytes]

    def __init__(self, ws: WriteOnlyWorksheet, out: IO[bytes]) -> None:
        super().__init__(ws, out=out)

    def cleanup(self) -> None:
        self.out.close()  # after _StampedZip copied it; an anonymous temporary file is deleted as it closes


# The cells openpyxl writes with no style of their own. Text goes to _escaped, then to ASCII with character references
# for the rest: exactly what lxml's xmlfile (ASCII, as openpyxl opens it) writes.
_NO_FAST_PATH = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # openpyxl or lxml refuse these
# Text with none of these (nearly all) needs neither escaping nor a look by _NO_FAST_PATH: one search instead of five.
_ATTENTION = re.compile(r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_COLUMNS = tuple(get_column_letter(index) for index in range(1, 16_385))  # Excel's 16,384 columns


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


class _FastSheet(WriteOnlyWorksheet):
    """A write-only sheet that writes the XML of a row of plain values (None, str, int, float, bool, naive datetime)
    itself, the same bytes openpyxl would: openpyxl makes a Cell per value, infers its type, looks up its style and
    has lxml write it element by element, some 12 µs a cell, three quarters of the 100,000-incident audit's time.
    A row holding anything else (a styled `WriteOnlyCell`, a formula-like or over-long string, a date with a time
    zone) is openpyxl's to write, as before."""

    _writer: _SheetWriter | None
    _in_memory = False
    _date_style: str | None = None
    # What openpyxl would consult for each row (a height, a style of its own) and each date: read at the first row.
    _row_dimensions: Any
    _iso_dates: bool
    _epoch: datetime

    # openpyxl creates its writer lazily at the first row, after widths and panes are set: so do we.
    def _get_writer(self) -> None:
        if self._writer is None:
            out: IO[bytes] = io.BytesIO() if self._in_memory else tempfile.TemporaryFile()
            self._writer = _SheetWriter(self, out)
            self._writer.write_top()

    def _write_rows(self) -> Generator[None, Iterable[object], None]:
        if not LXML:  # et_xmlfile writes UTF-8 and cannot flush: openpyxl writes every row
            yield from super()._write_rows()  # type: ignore[misc]
            return
        writer = self._writer
        assert writer is not None  # append made it
        wb = self.parent
        assert wb is not None  # a sheet belongs to a workbook
        self._row_dimensions = layout(self).row_dimensions
        self._iso_dates = wb.iso_dates
        self._epoch = wb.epoch
        xf: Any = writer.xf.send(True)  # lxml's incremental writer, inside <worksheet>
        with xf.element("sheetData"):
            xf.flush()  # what lxml holds (up to <sheetData>) goes out before the first row of ours
            row_idx = 1
            try:
                while True:
                    values = yield
                    row = values if isinstance(values, list | tuple) else list(values)
                    xml = self._row_xml(row, row_idx)
                    if xml is None:
                        writer.write_row(xf, self._values_to_row(row, row_idx), row_idx)  # type: ignore[attr-defined]
                        xf.flush()
                    else:
                        writer.out.write(xml)
                    row_idx += 1
            except GeneratorExit:
                pass
        writer.xf.send(None)

    def _row_xml(self, row: Sequence[object], row_idx: int) -> bytes | None:
        """The row as openpyxl's WorksheetWriter.write_row and lxml_write_cell would write it; None if a value of it
        is not a plain one, or the row has a height or style of its own."""
        if len(row) > len(_COLUMNS) or row_idx in self._row_dimensions:
            return None
        r = str(row_idx)
        parts = [f'<row r="{r}">']
        for column, value in zip(_COLUMNS, row, strict=False):
            if value is None:
                continue
            if type(value) is str:
                if not value:
                    parts.append(f'<c r="{column}{r}" t="inlineStr"></c>')
                    continue
                # A formula, an error value, a string openpyxl truncates or refuses: its own code decides.
                if value[0] in "=#" or len(value) > MAX_CELL_TEXT:
                    return None
                space = ' xml:space="preserve"' if value != value.strip() else ""
                if _ATTENTION.search(value):
                    if _NO_FAST_PATH.search(value):
                        return None
                    value = _escaped(value)
                parts.append(f'<c r="{column}{r}" t="inlineStr"><is><t{space}>{value}</t></is></c>')
            elif type(value) is int or type(value) is float:
                if not math.isfinite(value):
                    return None
                parts.append(f'<c r="{column}{r}" t="n"><v>{value:.16g}</v></c>')
            elif type(value) is bool:
                parts.append(f'<c r="{column}{r}" t="b"><v>{"1" if value else "0"}</v></c>')
            elif type(value) is datetime and value.tzinfo is None and not self._iso_dates:
                if self._date_style is None:
                    # Registered at the first date, as openpyxl would: the workbook's styles come out in the same order.
                    self._date_style = str(WriteOnlyCell(self, value).style_id)
                serial: float = to_excel(value, self._epoch)  # type: ignore[no-untyped-call]
                parts.append(f'<c r="{column}{r}" s="{self._date_style}" t="n"><v>{serial:.16g}</v></c>')
            else:
                return None
        parts.append("</row>")
        return "".join(parts).encode("ascii", "xmlcharrefreplace")


class _MemorySheet(_FastSheet):
    _in_memory = True


def memory_sheet(wb: Workbook, title: str) -> WriteOnlyWorksheet:
    """A write-only sheet buffered in memory, for workbooks of bounded size (an incident report).

    A write-only sheet normally streams into a temporary file, which keeps the 100,000-incident audit's memory flat
    but costs a file created, written, read back and deleted per sheet: ten per incident report, rendered again
    whenever the incident changes. The audit keeps temporary files (`write_only_workbook`).
    """
    ws = _MemorySheet(parent=wb, title=title)
    wb._add_sheet(ws)  # type: ignore[attr-defined]  # what Workbook.create_sheet does, with our sheet class
    return ws


class _FastWorkbook(Workbook):
    def create_sheet(self, title: Any = None, index: int | None = None) -> WriteOnlyWorksheet:
        ws = _FastSheet(parent=self, title=title)
        self._add_sheet(ws, index)  # type: ignore[attr-defined]  # what Workbook.create_sheet does in write-only mode
        return ws


def write_only_workbook() -> Workbook:
    """A write-only workbook whose sheets (`create_sheet`) stream into temporary files, writing plain rows fast."""
    return _FastWorkbook(write_only=True)


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
        filename: str | os.PathLike[str] | IO[bytes],
        arcname: str | os.PathLike[str] | None = None,
        compress_type: int | None = None,
        compresslevel: int | None = None,
    ) -> None:
        if isinstance(filename, io.BytesIO):  # a memory_sheet
            self.writestr(self._info(str(arcname)), filename.getvalue())
            return
        if not isinstance(filename, str | os.PathLike):  # a _FastSheet's temporary file
            filename.seek(0)
            with self.open(self._info(str(arcname)), "w") as target:
                shutil.copyfileobj(filename, target, 1024 * 1024)
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
