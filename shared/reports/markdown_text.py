"""Untrusted text (labels, annotations, log lines) made safe for CommonMark + GFM tables.

Escaped text renders as exactly the characters it holds: it cannot open emphasis, links, HTML, a heading or a
list, and inside a table cell it cannot end the cell or the row. `Md` marks strings that are already Markdown,
so the template environment can escape everything else by default.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote


class Md(str):
    """A string that is already valid Markdown and must not be escaped again."""

    __slots__ = ()


# Backslash-escapable ASCII punctuation that can start markup anywhere in a line. `<`, `>` and `&` become entities
# instead, so nothing from an alert can become an HTML tag, an autolink or a character reference.
_INLINE = str.maketrans(
    {
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "~": "\\~",
        "|": "\\|",
        "!": "\\!",
        "$": "\\$",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "\t": " ",
        "\r": "",
        "\x00": "\ufffd",
    }
)
# Characters that start a block (heading, list, quote, thematic break, setext underline, the `:-` of a table's
# delimiter row) at the start of a line.
_LINE_START = re.compile(r"^(\s*)([#+\-=*:]|\d{1,9}[.)])")
_NEWLINES = re.compile(r"\r\n|\r|\n|\u2028|\u2029|\x0b|\x0c|\x85")


def _escape_line_start(line: str) -> str:
    def repl(match: re.Match[str]) -> str:
        marker = match.group(2)
        if marker[-1] in ".)":
            return marker[:-1] + "\\" + marker[-1]
        return "\\" + marker

    return _LINE_START.sub(repl, line.lstrip(), count=1)


def inline(value: object) -> Md:
    """One line of text inside a paragraph, list item or heading: newlines become spaces."""
    if value is None:
        return Md("")
    text = _NEWLINES.sub(" ", str(value)).translate(_INLINE)
    return Md(_escape_line_start(text))


def cell(value: object) -> Md:
    """Text inside a GFM table cell: a `|` or a newline cannot split or end the row; empty cells stay valid."""
    # Block markers mean nothing inside a cell, so only inline markup (and `|`) is escaped.
    if value is None:
        return Md("")
    return Md(_NEWLINES.sub(" ", str(value)).translate(_INLINE).strip())


def paragraph(value: object) -> Md:
    """Multi-line text as its own paragraph, keeping its line breaks (as hard breaks)."""
    if value is None:
        return Md("")
    lines = [_escape_line_start(line.translate(_INLINE)).rstrip() for line in _NEWLINES.split(str(value).strip())]
    lines = [line for line in lines if line]
    return Md("\\\n".join(lines))


def code_block(lines: list[str], info: str = "text") -> Md:
    """Lines verbatim in a fenced block whose fence is longer than any backtick run inside, so none can close it."""
    body = "\n".join(_NEWLINES.sub(" ", line).replace("\x00", "\ufffd") for line in lines)
    longest = max((len(m.group(0)) for m in re.finditer(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return Md(f"{fence}{info}\n{body}\n{fence}")


def link(text: object, url: str) -> Md:
    """A link whose destination cannot break out of the angle brackets: unsafe characters are percent-encoded."""
    safe_url = quote(url.strip(), safe=":/?#[]@!$&'()*+,;=%~-._")
    return Md(f"[{inline(text)}](<{safe_url}>)")


def when(value: datetime | None) -> Md:
    """A time in UTC, ISO-like and sortable: `2026-11-01 03:00:00`."""
    if value is None:
        return Md("")
    return Md(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def duration(value: timedelta | float | None) -> Md:
    """`2d 03h 04m 05s`, `1h 02m 03s`, `4m 05s`, `7s`: exact to the second."""
    if value is None:
        return Md("")
    total = round(value.total_seconds() if isinstance(value, timedelta) else value)
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours:02d}h {minutes:02d}m {secs:02d}s"
    elif hours:
        text = f"{hours}h {minutes:02d}m {secs:02d}s"
    elif minutes:
        text = f"{minutes}m {secs:02d}s"
    else:
        text = f"{secs}s"
    return Md(sign + text)


def number(value: float | int | None) -> Md:
    """Six significant digits, the same on every platform; no exponent for everyday magnitudes."""
    if value is None:
        return Md("")
    if isinstance(value, int):
        return Md(str(value))
    if value != value:  # NaN
        return Md("NaN")
    mantissa, _, exponent = f"{value:.6g}".partition("e")
    return Md(f"{mantissa}e{int(exponent)}" if exponent else mantissa)
