"""How the walkthrough prints: steps, wrapped lines, and the client's own log lines."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["WIDTH", "captured", "heading", "quiet", "say", "short", "show_log_line"]

WIDTH = 76


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(number: int, title: str) -> None:
    say()
    say(f"[{number}] {title}")
    say("-" * WIDTH)


def short(data: Any, limit: int = 60) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_log_line(prefix: str, line: str) -> None:
    """Print a log line as it was written, wrapped under ``prefix``."""
    say(textwrap.fill(line, width=WIDTH, initial_indent=prefix, subsequent_indent=" " * 8,
                      break_on_hyphens=False))  # fmt: skip


@contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Hold back a logger's records below ERROR for the duration of the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(logger_name: str, level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """Collect a logger's records from ``level`` up, instead of printing them as they come."""
    logger = logging.getLogger(logger_name)
    handler = _Collect()
    saved = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
