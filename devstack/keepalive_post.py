"""POSTs over kept-alive HTTP/1.1 connections to one origin: the load generator's transport.

Written rather than taken from a library because of what it costs on the machine it measures. The load generator
shares the 2-core machine with the whole of Vigil, and with one alert per webhook its client set the pace: aiohttp's
client took 105 µs of CPU per webhook (a tenth of the machine in the one-alert storm; httpx's took more), this one
takes 30 µs. `python -m bench.pipeline`'s one-alert storm went from 1,765-2,045 to 2,180-2,246 alerts/s (three runs
each, same machine and hour) with Vigil's own CPU per alert unchanged: the difference was the load generator's.

It speaks only what ingest answers: a status line, headers and a body of `Content-Length` bytes. An answer without
one is an error (ValueError, which the sender does not take for an outage), not a guess at where the body ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

# What one answer's head may take; ingest's are a few hundred bytes.
HEAD_LIMIT = 64 * 1024


class KeepAlivePost:
    """One origin's idle connections, and a POST that takes one (or opens one) and puts it back when the answer
    allows. Answers may only be read whole: a POST cancelled or failed halfway closes its connection."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"not a plain http URL: {url}")
        self.host, self.port = parts.hostname, parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes) -> int:
        """The answer's status. Raises OSError (connection), EOFError (closed before a whole answer) or ValueError
        (not an answer this client reads). A kept-alive connection the server closed while idle is no failure: the
        POST goes again on a new connection, once, as any HTTP client does."""
        if self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, body)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT)
        return await self._exchange(reader, writer, body)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
        try:
            writer.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, close = parse_head(head)
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, body length, whether the server closes the connection) of an HTTP/1.1 answer's head."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    length: int | None = None
    close = version == "HTTP/1.0"
    for line in header_lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.lower() == "close"
        elif name == "transfer-encoding":
            raise ValueError(f"answer with Transfer-Encoding {value!r}: this client reads Content-Length bodies only")
    if length is None:
        raise ValueError("answer without Content-Length")
    return int(rest[:3]), length, close
