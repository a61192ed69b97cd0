"""The ``mscomm`` command line.

Subcommands:

* ``mscomm keygen`` prints fresh keys.
* ``mscomm registry ...`` inspects and edits a service registry.

Global options go before the subcommand: ``--version``, and ``--registry`` and
``--json``, which every registry subcommand also accepts after its name.

Exit status: 0 success; 1 the registry was read and the answer is no (not
found, nothing removed, unhealthy); 2 usage errors and failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Optional

from . import __version__
from .errors import MscommError
from .keyring import generate_key

__all__ = ["build_parser", "main"]


def _keygen(args: argparse.Namespace) -> int:
    keys = [generate_key() for _ in range(args.count)]
    if args.json:
        print(json.dumps(keys))
    else:
        for key in keys:
            print(key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``mscomm``."""
    from .registry.cli import EXIT_ERROR, add_location_options
    from .registry.cli import add_parser as add_registry_parser

    parser = argparse.ArgumentParser(
        prog="mscomm",
        description="Sealed, resilient service-to-service calls: keys and registry tools.",
        epilog=(
            "Exit status: 0 success; 1 not found, nothing removed or unhealthy; "
            f"{EXIT_ERROR} usage error or failure."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (mscomm_sync) {__version__}"
    )
    add_location_options(parser, top_level=True)
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
    keygen.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print a JSON list of keys",
    )
    keygen.set_defaults(func=_keygen)

    add_registry_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``mscomm`` with ``argv`` and return the exit status."""
    from .registry.cli import EXIT_ERROR

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except MscommError as exc:
        print(f"mscomm: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return status
