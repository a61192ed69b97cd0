"""``mscomm registry`` subcommands (filled in by the registry work)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add the ``registry`` subcommand to ``subparsers``."""
    del subparsers
    _ = argparse
