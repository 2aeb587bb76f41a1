"""The one Jinja2 environment every report renders with, and the section reports built on it.

Templates are package data under ``service/templates/``: ``base.html.j2`` (page frame and the
one stylesheet, ``report.css``), ``calibration.html.j2`` / ``calibration.md.j2`` (the
calibration report, :mod:`calibration.report`) and ``sections.html.j2`` / ``sections.md.j2``
(the section reports of ``slices``, ``compare``, ``diagnose`` and pool sampling).

HTML templates (``.html.j2``) are autoescaped: every value a template prints is escaped once,
here, with :func:`html.escape` (``quote=True``, so ``'`` → ``&#x27;`` and ``"`` → ``&quot;``,
the spelling the reports have always used); values already marked safe (``Markup``, such as
macro output) pass through. Markdown templates (``.md.j2``) print values as they are; their
table cells are escaped for Markdown by the ``md`` filter.

A section is ``(heading, paragraphs, table, figures)``: ``paragraphs`` a list of strings,
``table`` ``(header, rows of cells)`` or None, ``figures`` one PNG data URI, a list of them
(None entries skipped) or None.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_eval_context
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"


@pass_eval_context
def _finalize(eval_ctx, value: Any) -> Any:
    """Escape a printed value in an autoescaped template (see the module docstring)."""
    if eval_ctx.autoescape and not hasattr(value, "__html__"):
        return Markup(html.escape(str(value), quote=True))
    return value


def markdown_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: backslash and ``|`` escaped, line breaks as spaces."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@cache
def environment() -> Environment:
    """The reports' Jinja2 environment (built once): autoescape on for ``.html.j2``, off for ``.md.j2``.

    Undefined names raise :class:`jinja2.UndefinedError`, so a template never prints an empty
    value silently.
    """
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=lambda name: (name or "").endswith(".html.j2"),
                      finalize=_finalize, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["md"] = markdown_cell
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of ``service/templates/`` with ``context``.

    Raises:
        jinja2.TemplateNotFound: no such template.
        jinja2.UndefinedError: the template uses a name the context lacks.
    """
    return environment().get_template(template).render(**context)


def sections_html(title: str, sections: list) -> str:
    """A section report as one self-contained HTML page (inline CSS, figures as data URIs)."""
    return render("sections.html.j2", title=title, sections=[_figures(s) for s in sections])


def sections_markdown(title: str, sections: list) -> str:
    """A section report as Markdown: the same headings, paragraphs and tables, no figures."""
    return render("sections.md.j2", title=title, sections=sections)


def _figures(section: tuple) -> tuple:
    """The section with its figures as a list of data URIs (a single one wrapped, None entries dropped)."""
    heading, paras, table, figs = section
    figs = [figs] if isinstance(figs, str) else [f for f in figs or [] if f]
    return heading, paras, table, figs
