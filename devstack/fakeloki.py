"""A small Loki of the project's own, for tests and benches where no Loki can be installed (docker-compose runs
the real one). It keeps pushed lines in memory and answers `query_range` in Loki's exact response format.

    python -m devstack.fakeloki --port 3100 [--delay 0] [--max-query-series 500]

Endpoints: `POST /loki/api/v1/push` (JSON push format), `GET|POST /loki/api/v1/query_range`, `GET /ready`.

The LogQL subset it understands (anything else is a 400, as Loki answers an unparsable query):
- log queries: a stream selector with `=`, `!=`, `=~`, `!~` matchers (regexes anchored, RE2 syntax as far as
  Python's `re` shares it), then any number of line filters `|=`, `!=`, `|~`, `!~`; strings in double quotes
  (Go escapes) or backticks. Result: `streams`, newest first (`direction=backward`, the default) or oldest
  first, at most `limit` lines (default 100, at most 5000) across all streams, `start <= ts < end`.
- metric queries: `count_over_time(<log query> [<duration>])` and `rate(...)`, optionally wrapped in
  `sum(...)` / `sum by (labels) (...)` / `sum(...) by (labels)`. Result: `matrix` evaluated at start, start+step,
  ... end, each sample counting lines in `(t - range, t]`; empty samples are left out, as Loki does. More series
  than `max_query_series` (Loki's limits_config setting, default 500) is a 400 with Loki's message; `limit` is
  checked but, as in Loki, counts only log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from shared.matchers import Matcher, MatcherError, matches_all, new_matcher

MAX_LIMIT = 5000
DEFAULT_LIMIT = 100
MAX_QUERY_SERIES = 500

# --- Parsing ---------------------------------------------------------------------------------------


class LogQLError(ValueError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<duration>\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*)(?![A-Za-z0-9_])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>=~|!~|!=|\|=|\|~|=|\{|\}|,|\(|\)|\[|\])
    )""",
    re.VERBOSE | re.DOTALL,
)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def go_unquote(token: str) -> str:
    """A Go string literal's value (as strconv.Unquote): what LogQL and PromQL do with "..." and `...`."""
    if token.startswith("`"):
        return token[1:-1]
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise LogQLError(f"invalid escape \\{nxt}{digits} in string {token}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif re.fullmatch(r"[0-7]", nxt):
            digits = body[i + 1 : i + 4]
            if not re.fullmatch(r"[0-7]{3}", digits):
                raise LogQLError(f"invalid octal escape in string {token}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise LogQLError(f"invalid escape \\{nxt} in string {token}")
    return "".join(out)


def tokenize(query: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(query):
        if not query[pos:].strip():
            break
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise LogQLError(f"parse error at col {pos + 1}: unexpected {query[pos : pos + 10]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def parse_duration(text: str) -> float:
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


@dataclass(frozen=True)
class LineFilter:
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, line: str) -> bool:
        if self.op == "|=":
            return self.value in line
        if self.op == "!=":
            return self.value not in line
        assert self.regex is not None
        hit = self.regex.search(line) is not None
        return hit if self.op == "|~" else not hit


@dataclass(frozen=True)
class LogQuery:
    matchers: tuple[Matcher, ...]
    filters: tuple[LineFilter, ...]

    def selects(self, labels: dict[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def keeps(self, line: str) -> bool:
        return all(f.matches(line) for f in self.filters)


@dataclass(frozen=True)
class MetricQuery:
    function: str  # count_over_time | rate
    log: LogQuery
    range_s: float
    sum: bool
    by: tuple[str, ...] | None


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise LogQLError(f"invalid regex {pattern!r}: {exc}") from None


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens = tokenize(query)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1] != value):
            want = value or kind or "more"
            got = token[1] if token else "end of query"
            raise LogQLError(f"parse error: syntax error: unexpected {got}, expecting {want}")
        self.pos += 1
        return token[1]

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[1] == value

    def done(self) -> None:
        if self.peek() is not None:
            raise LogQLError(f"parse error: syntax error: unexpected {self.peek()[1]}")  # type: ignore[index]

    def log_query(self) -> LogQuery:
        self.take("op", "{")
        matchers: list[Matcher] = []
        while True:
            label = self.take("ident")
            op = self.take("op")
            if op not in {"=", "!=", "=~", "!~"}:
                raise LogQLError(f"parse error: unexpected {op} after label {label}")
            value = go_unquote(self.take("string"))
            try:
                matchers.append(new_matcher(op, label, value))
            except MatcherError as exc:
                raise LogQLError(f"invalid matcher {label}{op}: {exc}") from None
            if self.at(","):
                self.take("op", ",")
                continue
            self.take("op", "}")
            break
        if all(not m.type.is_equal or m.matches("") for m in matchers):
            raise LogQLError(
                "queries require at least one regexp or equality matcher that does not have an empty-compatible "
                'value. For instance, app=~".*" does not meet this requirement, but app=~".+" will'
            )
        filters = []
        while self.peek() is not None and self.peek()[1] in {"|=", "!=", "|~", "!~"}:  # type: ignore[index]
            op = self.take("op")
            value = go_unquote(self.take("string"))
            filters.append(LineFilter(op, value, _compile(value) if op in {"|~", "!~"} else None))
        return LogQuery(tuple(matchers), tuple(filters))

    def by_clause(self) -> tuple[str, ...]:
        self.take("ident", "by")
        self.take("op", "(")
        labels = [self.take("ident")]
        while self.at(","):
            self.take("op", ",")
            labels.append(self.take("ident"))
        self.take("op", ")")
        return tuple(labels)

    def range_aggregation(self) -> tuple[str, LogQuery, float]:
        function = self.take("ident")
        if function not in {"count_over_time", "rate"}:
            raise LogQLError(
                f"parse error: unsupported function {function} (this fake Loki knows count_over_time, rate)"
            )
        self.take("op", "(")
        log = self.log_query()
        self.take("op", "[")
        range_s = parse_duration(self.take("duration"))
        self.take("op", "]")
        self.take("op", ")")
        return function, log, range_s

    def query(self) -> LogQuery | MetricQuery:
        if self.at("{"):
            log = self.log_query()
            self.done()
            return log
        if self.at("sum"):
            self.take("ident", "sum")
            by = self.by_clause() if self.at("by") else None
            self.take("op", "(")
            function, log, range_s = self.range_aggregation()
            self.take("op", ")")
            if by is None and self.at("by"):
                by = self.by_clause()
            self.done()
            return MetricQuery(function, log, range_s, True, by)
        function, log, range_s = self.range_aggregation()
        self.done()
        return MetricQuery(function, log, range_s, False, None)


def parse_query(query: str) -> LogQuery | MetricQuery:
    if not query.strip():
        raise LogQLError("parse error: syntax error: unexpected end of query")
    return _Parser(query).query()


# --- Storage and evaluation ------------------------------------------------------------------------


@dataclass
class Store:
    streams: dict[tuple[tuple[str, str], ...], tuple[list[int], list[str]]] = field(default_factory=dict)

    def push(self, labels: dict[str, str], entries: list[tuple[int, str]]) -> None:
        key = tuple(sorted(labels.items()))
        times, lines = self.streams.setdefault(key, ([], []))
        for ts, line in entries:
            at = bisect_right(times, ts)
            times.insert(at, ts)
            lines.insert(at, line)

    def select(self, log: LogQuery, start_ns: int, end_ns: int) -> list[tuple[dict[str, str], list[tuple[int, str]]]]:
        """Matching streams with their matching entries in `start <= ts < end`, oldest first."""
        found = []
        for key, (times, lines) in self.streams.items():
            labels = dict(key)
            if not log.selects(labels):
                continue
            lo, hi = bisect_left(times, start_ns), bisect_left(times, end_ns)
            entries = [(times[i], lines[i]) for i in range(lo, hi) if log.keeps(lines[i])]
            if entries:
                found.append((labels, entries))
        return found


def evaluate_logs(
    store: Store, log: LogQuery, start_ns: int, end_ns: int, limit: int, direction: str
) -> list[dict[str, Any]]:
    backward = direction == "backward"
    selected = store.select(log, start_ns, end_ns)
    everything = [(ts, i, line) for i, (_, entries) in enumerate(selected) for ts, line in entries]
    everything.sort(key=lambda e: e[0], reverse=backward)
    kept: dict[int, list[list[str]]] = {}
    for ts, i, line in everything[:limit]:
        kept.setdefault(i, []).append([str(ts), line])
    return [{"stream": selected[i][0], "values": values} for i, values in kept.items()]


def evaluate_metric(
    store: Store, metric: MetricQuery, start_ns: int, end_ns: int, step_s: float
) -> list[dict[str, Any]]:
    range_ns = int(metric.range_s * 1e9)
    step_ns = max(int(step_s * 1e9), 1)
    selected = store.select(metric.log, start_ns - range_ns, end_ns + 1)
    series: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
    for labels, entries in selected:
        if metric.sum:
            group = tuple(sorted((k, labels[k]) for k in (metric.by or ()) if k in labels))
        else:
            group = tuple(sorted(labels.items()))
        times = [ts for ts, _ in entries]
        t = start_ns
        while t <= end_ns:
            count = bisect_right(times, t) - bisect_right(times, t - range_ns)
            if count:
                value = count / metric.range_s if metric.function == "rate" else float(count)
                points = series.setdefault(group, {})
                points[t] = points.get(t, 0.0) + value
            t += step_ns
    result = []
    for group, points in series.items():
        values = [[_seconds(t), _number(v)] for t, v in sorted(points.items())]
        result.append({"metric": dict(group), "values": values})
    return result


def _seconds(ns: int) -> int | float:
    whole, frac = divmod(ns, 1_000_000_000)
    return whole if frac == 0 else ns / 1e9


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def parse_time(value: str | None, default_ns: int) -> int:
    """Nanoseconds from Loki's accepted forms: ns or s epoch integers, float seconds, RFC3339."""
    if value is None or value == "":
        return default_ns
    if re.fullmatch(r"\d+", value):
        return int(value) * 1_000_000_000 if len(value) <= 10 else int(value)
    if re.fullmatch(r"\d+\.\d*", value):
        return int(float(value) * 1e9)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise LogQLError(f'invalid parameter "{value}": cannot parse as a time') from None
    if parsed.tzinfo is None:
        raise LogQLError(f'invalid parameter "{value}": RFC3339 needs a time zone')
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


def parse_step(value: str | None, start_ns: int, end_ns: int) -> float:
    if value is None or value == "":
        return max((end_ns - start_ns) // 1_000_000_000 // 250, 1)
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        step = float(value)
    elif re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", value):
        step = parse_duration(value)
    else:
        raise LogQLError(f'invalid parameter "step": cannot parse "{value}"')
    if step <= 0:
        raise LogQLError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    return step


# --- HTTP ----------------------------------------------------------------------------------------

STORE = web.AppKey("store", Store)
DELAY = web.AppKey("delay", Callable[[], float])
MAX_SERIES = web.AppKey("max_query_series", int)


async def push(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return web.Response(status=415, text="this fake Loki accepts only the JSON push format\n")
    try:
        body = await request.json()
        for stream in body["streams"]:
            labels = {str(k): str(v) for k, v in stream["stream"].items()}
            entries = [(int(value[0]), str(value[1])) for value in stream["values"]]
            request.app[STORE].push(labels, entries)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return web.Response(status=400, text=f"invalid push request: {exc}\n")
    return web.Response(status=204)


async def query_range(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    delay = request.app[DELAY]()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        query = parse_query(params.get("query", ""))
        now = time.time_ns()
        end_ns = parse_time(params.get("end"), now)
        start_ns = parse_time(params.get("start"), end_ns - 3600 * 1_000_000_000)
        if end_ns < start_ns:
            raise LogQLError("end timestamp must not be before or equal to start time")
        limit = int(params.get("limit") or DEFAULT_LIMIT)
        if limit <= 0 or limit > MAX_LIMIT:
            raise LogQLError(f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_LIMIT})")
        direction = (params.get("direction") or "backward").lower()
        if direction not in {"backward", "forward"}:
            raise LogQLError(f'invalid parameter "direction": {direction}')
        store = request.app[STORE]
        if isinstance(query, LogQuery):
            data = {"resultType": "streams", "result": evaluate_logs(store, query, start_ns, end_ns, limit, direction)}
        else:
            step = parse_step(params.get("step"), start_ns, end_ns)
            result = evaluate_metric(store, query, start_ns, end_ns, step)
            if len(result) > request.app[MAX_SERIES]:
                raise LogQLError(
                    f"maximum number of series ({request.app[MAX_SERIES]}) reached for a single query; consider "
                    "reducing query cardinality by adding more specific stream selectors, reducing the time range, "
                    "or aggregating results with functions like sum(), count() or topk()"
                )
            data = {"resultType": "matrix", "result": result}
    except LogQLError as exc:
        return web.Response(status=400, text=f"{exc}\n")
    except ValueError as exc:
        return web.Response(status=400, text=f"invalid parameter: {exc}\n")
    data["stats"] = {"summary": {"execTime": 0.0, "totalLinesProcessed": 0}}
    return web.json_response({"status": "success", "data": data})


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ready\n")


def create_app(
    delay: float | Callable[[], float] = 0.0, store: Store | None = None, max_query_series: int = MAX_QUERY_SERIES
) -> web.Application:
    """`delay`: seconds (or a function giving them) every query waits before answering, to play a slow Loki."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[STORE] = store if store is not None else Store()
    app[DELAY] = delay if callable(delay) else (lambda: float(delay))
    app[MAX_SERIES] = max_query_series
    app.router.add_post("/loki/api/v1/push", push)
    app.router.add_get("/loki/api/v1/query_range", query_range)
    app.router.add_post("/loki/api/v1/query_range", query_range)
    app.router.add_get("/ready", ready)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every query waits before answering")
    parser.add_argument("--max-query-series", type=int, default=MAX_QUERY_SERIES, help="series a metric query may give")
    args = parser.parse_args()
    app = create_app(args.delay, max_query_series=args.max_query_series)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
