"""The ``mscomm`` command line.

Subcommands:

* ``mscomm keygen`` prints one fresh key.
* ``mscomm registry ...`` inspects and edits a service registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from .errors import MscommError
from .keyring import generate_key

__all__ = ["build_parser", "main"]


def _keygen(args: argparse.Namespace) -> int:
    for _ in range(args.count):
        print(generate_key())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``mscomm``."""
    parser = argparse.ArgumentParser(
        prog="mscomm",
        description="Sealed, resilient service-to-service calls: keys and registry tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    keygen = sub.add_parser(
        "keygen",
        help="print a fresh service key",
        description=(
            "Print a fresh key: 32 random bytes in URL-safe base64, one per line. "
            "Put it in <SERVICE>_ENCRYPTION_KEY, e.g. "
            "BILLING_ENCRYPTION_KEY=$(mscomm keygen). To rotate, prepend the new "
            "key: NEW,OLD (the first seals, all open)."
        ),
    )
    keygen.add_argument(
        "-n", "--count", type=int, default=1, help="how many keys to print (default: 1)"
    )
    keygen.set_defaults(func=_keygen)

    from .registry.cli import add_parser as add_registry_parser

    add_registry_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``mscomm`` with ``argv`` and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except MscommError as exc:
        print(f"mscomm: error: {exc}", file=sys.stderr)
        return 2
    return status
