"""The incident report as Markdown (CommonMark with GFM tables), rendered by jinja2 from the shared content.

Escaping is on by default: the environment's `finalize` escapes every value the template prints, unless a
filter already made it Markdown (`Md`). A template that forgets a filter still cannot let alert data through raw.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from shared.reports import markdown_text as md
from shared.reports.incident_content import IncidentContent, LogRow, build
from shared.reports.incident_report import IncidentReport
from shared.urls import is_web_url


def _finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, md.Md):
        return value
    return md.inline(value)


def _url(value: str) -> md.Md:
    return md.link(value, value) if is_web_url(value) else md.inline(value)


def _pairs(value: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))


def _percent(share: float) -> md.Md:
    return md.Md(f"{round(share * 100)}%")


def _log_block(lines: list[LogRow]) -> md.Md:
    rendered = []
    for line in lines:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(line.labels.items()))
        rendered.append(f"{md.when(line.at)} {{{labels}}} {line.line}")
    return md.code_block(rendered)


def environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=False,  # noqa: S701 - Markdown, escaped by `finalize`; HTML autoescape would be wrong here
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        cell=md.cell,
        paragraph=md.paragraph,
        when=md.when,
        duration=md.duration,
        number=md.number,
        url=_url,
        pairs=_pairs,
        log_block=_log_block,
        link=md.link,
        percent=_percent,
    )
    return env


ENV = environment(Path(__file__).with_name("templates"))


def render_content(content: IncidentContent) -> str:
    return ENV.get_template("incident.md.j2").render(c=content, s=content.summary)


def render(report: IncidentReport) -> str:
    """The report as Markdown; the same report always gives the same string."""
    return render_content(build(report))
