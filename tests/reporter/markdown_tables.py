"""Reading rendered Markdown back: table cells as a reader sees them, and a table line's cell separators."""

from __future__ import annotations

from markdown_it.token import Token


def unescaped_pipes(line: str) -> int:
    """Cell separators in a GFM table line: pipes not preceded by an odd number of backslashes."""
    count, backslashes = 0, 0
    for ch in line:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == "|" and backslashes % 2 == 0:
            count += 1
        backslashes = 0
    return count


def tables(tokens: list[Token]) -> list[list[list[str]]]:
    """Every table as rows of cell texts (header row first), from markdown-it's token stream."""
    found: list[list[list[str]]] = []
    row: list[str] | None = None
    for index, token in enumerate(tokens):
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            assert row is not None
            row.append(inline_text(tokens[index + 1]))
        elif token.type == "tr_close":
            assert row is not None
            found[-1].append(row)
    return found


def inline_text(token: Token) -> str:
    """The text a reader sees in an inline token; fails on anything that is not plain text or a link."""
    parts = []
    for child in token.children or []:
        assert child.type not in ("html_inline", "html_block"), f"raw HTML from data: {child.content!r}"
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)
