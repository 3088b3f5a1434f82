"""Pictures written to files: the format from the name (or --format), DOT through Graphviz's
dot, and the HTML report. Above both render.py (the drawing) and report.py (the page), so that
neither needs the other's caller."""
from __future__ import annotations

import os

from ..errors import OutputError, PrototxtGenError
from ..graph.net import Net
from .render import FORMATS, dot_pipe, to_dot


def render(net: Net, path: str | os.PathLike, *, fmt: str | None = None,
           rankdir: str = "TB", collapse: bool | str = False) -> str:
    """Write the picture to `path` as svg, png, pdf, dot or html (the report: graph and
    sortable analysis table, see report.py), from the extension unless `fmt` says; returns
    the format. Only dot output works without Graphviz's `dot` program."""
    from ..fileio import atomic_write
    fmt = (fmt or os.path.splitext(os.fspath(path))[1].lstrip(".")).lower()
    if fmt not in FORMATS:
        raise PrototxtGenError(f"{path}: cannot tell the format from the name; give --format "
                               f"({', '.join(FORMATS)})")
    if fmt == "html":
        from .report import report_html  # its table needs numpy; the other formats do not
        try:
            page = report_html(net, rankdir=rankdir, collapse=collapse)
        except OutputError as exc:
            raise OutputError(f"{path}: {exc}") from None
        atomic_write(path, page)
        return fmt
    source = to_dot(net, rankdir=rankdir, collapse=collapse)
    if fmt == "dot":
        atomic_write(path, source)
        return fmt
    try:
        data = dot_pipe(source, fmt)
    except OutputError as exc:
        raise OutputError(f"{path}: {exc}") from None
    atomic_write(path, data)
    return fmt
