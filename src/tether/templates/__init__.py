"""HTML and SVG from Jinja2 templates, with autoescaping on: the one place tether makes markup.

The templates are files of this package (``ui/`` for the approver's page, ``report/`` for the
privileges report). Every value a template prints is escaped for HTML unless a template itself
produced it (a macro's output); no Python code marks a string safe, so text from an agent, a
request or an audit record can only ever show as text. An undefined name is an error, never an
empty string.

The environment is built on first use, so importing this module (and the CLI commands that do)
costs nothing until a page is rendered.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("tether.templates", "."),
        # INVARIANT: autoescape for every template, whatever its file name.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def render(name: str, /, **context: object) -> str:
    """The template ``name`` (e.g. ``ui/login.html``) filled with ``context``, escaped."""
    return environment().get_template(name).render(**context)
