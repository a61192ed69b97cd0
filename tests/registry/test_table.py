"""Command-line tables: columns line up in terminal cells."""

from __future__ import annotations

from mscomm_sync.registry.table import format_table, text_width


def column_starts(line: str, cells: list[str]) -> list[int]:
    """Return the terminal-cell offset at which each of ``cells`` starts in ``line``."""
    starts, position = [], 0
    for cell in cells:
        index = line.index(cell, position)
        starts.append(text_width(line[:index]))
        position = index + len(cell)
    return starts


def test_columns_start_at_the_same_cell_on_every_line() -> None:
    """Cells of different lengths, wide characters included, still start their column together."""
    rows = [["billing", "http://127.0.0.1:8001", "zone=日本"], ["a", "http://h:1", "-"]]
    text = format_table(["SERVICE", "URL", "METADATA"], rows)
    lines = text.splitlines()
    starts = {
        tuple(column_starts(line, cells))
        for line, cells in zip(lines, [["SERVICE", "URL", "METADATA"], *rows])
    }
    assert len(starts) == 1


def test_wide_characters_take_two_cells_and_combining_marks_none() -> None:
    """text_width counts East Asian wide characters twice and combining accents not at all."""
    assert text_width("日本") == 4
    assert text_width("e\u0301") == 1
    assert text_width("abc") == 3


def test_right_aligned_columns_end_together() -> None:
    """A column marked right ends at the same cell on every line."""
    text = format_table(["NAME", "TIME"], [["a", "5 ms"], ["b", "120 ms"]], right={1})
    assert [len(line) for line in text.splitlines()] == [12, 12, 12]


def test_lines_have_no_trailing_spaces() -> None:
    """A short last cell is not padded out."""
    text = format_table(["A", "LONG HEADER"], [["x", "y"]])
    assert all(line == line.rstrip() for line in text.splitlines())
