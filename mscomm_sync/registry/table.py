"""Plain-text tables for the command line, with columns that line up.

Widths are measured in terminal cells, not characters, so that a row holding
East Asian wide characters (two cells) or combining marks (none) still lines up.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence

__all__ = ["format_table", "text_width"]


def text_width(text: str) -> int:
    """Return how many terminal cells ``text`` takes."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[int] = ()
) -> str:
    """Return ``headers`` and ``rows`` as lines whose columns line up, two spaces apart.

    Args:
        headers: the column titles.
        rows: one sequence of cells per row, as many as there are headers.
        right: indexes of the columns to align right (numbers); others align left.

    Returns:
        The lines, joined by newlines, without trailing spaces.
    """
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(text_width(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        cells = []
        for i, (cell, width) in enumerate(zip(line, widths)):
            pad = " " * (width - text_width(cell))
            cells.append(pad + cell if i in right else cell + pad)
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
