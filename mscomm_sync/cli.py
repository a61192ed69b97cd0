"""The ``mscomm`` command line.

Subcommands:

* ``mscomm keygen`` prints a fresh protocol v2 key pair (``--v1``: a shared key).
* ``mscomm key public|id`` prints the public half or the key id of a key.
* ``mscomm trust ...`` edits, signs, verifies and shows a trust file.
* ``mscomm registry ...`` inspects and edits a service registry.
* ``mscomm call SERVICE METHOD PATH`` makes one sealed call and prints the answer
  (:mod:`mscomm_sync.call_cli`).

Global options go before the subcommand: ``--version``, ``--registry``, and
``--json``, which every subcommand that prints data also accepts after its name.

Private keys are read from a variable or from standard input, never from the
command line, and no command but ``keygen`` and ``trust root`` prints one.

Exit status: 0 success; 1 the answer is no (not found, already present,
nothing removed, unhealthy, not verified); 2 usage errors and failures.
``call`` has its own: 1 for an HTTP error status, 3 for a failed call.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any, Optional

from . import __version__
from .errors import ConfigurationError, MscommError
from .keyring import Key, generate_key
from .trust.cli import read_secret
from .trust.keys import PrivateKey, PublicKey, generate_private_key

__all__ = ["build_parser", "main"]

_V2_HINT = (
    "the private key (stdout) is the service's one secret: set it as <NAME>_PRIVATE_KEY "
    "there and nowhere else; the public key goes in the trust file (mscomm trust add FILE "
    "NAME PUBLIC_KEY) or in <NAME>_PUBLIC_KEY"
)
_V1_HINT = (
    "a v1 key is shared: set it as <NAME>_ENCRYPTION_KEY on the service and on every "
    "service that talks to it"
)


def _keygen(args: argparse.Namespace) -> int:
    if args.v1:
        keys = [generate_key() for _ in range(args.count)]
        if args.json:
            print(json.dumps(keys))
            return 0
        for key in keys:
            print(key)
        for key in keys:
            kid = Key.from_bytes(base64.urlsafe_b64decode(key + "=")).kid
            print(f"key id {kid}", file=sys.stderr)
        print(_V1_HINT, file=sys.stderr)
        return 0
    pairs = [generate_private_key() for _ in range(args.count)]
    if args.json:
        for pair in pairs:
            print(json.dumps(_pair(pair, private=True)))
        return 0
    for pair in pairs:
        print(pair.text())
    for pair in pairs:
        print(f"public key {pair.public.text}  key id {pair.kid}", file=sys.stderr)
    print(_V2_HINT, file=sys.stderr)
    return 0


def _pair(key: PrivateKey, *, private: bool = False) -> dict[str, str]:
    shown = {"private_key": key.text()} if private else {}
    return {**shown, "public_key": key.public.text, "key_id": key.kid}


def _split(text: str, source: str) -> list[str]:
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigurationError(f"{source} holds no key", variable=source, reason="empty")
    return parts


def _key_public(args: argparse.Namespace) -> int:
    text, source = read_secret(args.from_env, what="private key")
    keys = [PrivateKey.from_text(p, source=source) for p in _split(text, source)]
    for key in keys:
        if args.json:
            print(json.dumps(_pair(key)))
        else:
            print(key.public.text)
            print(f"key id {key.kid}", file=sys.stderr)
    return 0


def _key_id(args: argparse.Namespace) -> int:
    if args.public is not None:
        kids = [PublicKey.from_text(args.public, source="--public").kid]
    else:
        text, source = read_secret(args.from_env or args.v1_from_env, what="key")
        parts = _split(text, source)
        if args.from_env is not None:
            kids = [PrivateKey.from_text(p, source=source).kid for p in parts]
        else:
            kids = [Key.from_text(p, source=source).kid for p in parts]
    for kid in kids:
        print(json.dumps({"key_id": kid}) if args.json else kid)
    return 0


def _json_option(parser: argparse.ArgumentParser, help: str) -> None:
    # SUPPRESS: a --json given before the subcommand stays set.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help)


def _add_key_parsers(sub: Any) -> None:
    keygen = sub.add_parser(
        "keygen",
        help="print a fresh key pair (protocol v2), or a shared key (--v1)",
        description=(
            "Print a fresh protocol v2 key pair: the private key alone on stdout, so that "
            "BILLING_PRIVATE_KEY=$(mscomm keygen) works, and its public key and key id on "
            "stderr (the public key goes in the trust file or in <SERVICE>_PUBLIC_KEY). "
            "Each key is 32 bytes in URL-safe base64. To rotate a key pair: give the "
            "service both private keys, the new one second (<SERVICE>_PRIVATE_KEY=OLD,NEW: "
            "the first seals, all open); then publish the new public key first (mscomm "
            "trust add --first); once every peer has it and a replay window has passed, keep "
            "only NEW; last, remove the old public key (mscomm trust remove). The key "
            "rotation page (docs/rotation.md) has every step. With --v1, print a "
            "shared key for <SERVICE>_ENCRYPTION_KEY instead, and its key id on stderr; to "
            "rotate it, put the new key second everywhere (OLD,NEW), then first (NEW,OLD), "
            "then drop OLD."
        ),
    )
    keygen.add_argument(
        "-n", "--count", type=int, default=1, help="how many keys to print (default: 1)"
    )
    keygen.add_argument(
        "--v1", action="store_true", help="a protocol v1 shared key (<SERVICE>_ENCRYPTION_KEY)"
    )
    _json_option(keygen, "print JSON: one object per key pair per line; with --v1, a list")
    keygen.set_defaults(func=_keygen)

    key = sub.add_parser(
        "key",
        help="print the public key or the key id of a key",
        description="Print the public half or the key id of a key, never the key itself.",
    )
    actions = key.add_subparsers(dest="key_command", metavar="ACTION")
    actions.required = True
    public = actions.add_parser(
        "public",
        help="print the public key of a private key",
        description=(
            "Print the public key (stdout) and key id (stderr) of the protocol v2 private key "
            "in VAR, or else on one line of standard input; one of each per key it holds."
        ),
    )
    public.add_argument("--from-env", metavar="VAR", help="the variable that holds the key")
    _json_option(public, "print one JSON object per key, one per line")
    public.set_defaults(func=_key_public)
    ident = actions.add_parser(
        "id",
        help="print the key id of a key",
        description="Print the key id of a public key, a v2 private key, or a v1 shared key.",
    )
    source = ident.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--public", metavar="KEY", help="a protocol v2 public key (write --public=KEY)"
    )
    source.add_argument("--from-env", metavar="VAR", help="a variable holding v2 private keys")
    source.add_argument("--v1-from-env", metavar="VAR", help="a variable holding v1 shared keys")
    _json_option(ident, "print one JSON object per key, one per line")
    ident.set_defaults(func=_key_id)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``mscomm``."""
    from .call_cli import EXIT_MSCOMM_ERROR
    from .call_cli import add_parser as add_call_parser
    from .registry.cli import EXIT_ERROR, add_location_options
    from .registry.cli import add_parser as add_registry_parser
    from .registry.table import format_table
    from .trust.cli import add_parser as add_trust_parser

    parser = argparse.ArgumentParser(
        prog="mscomm",
        description=(
            "Sealed, resilient service-to-service calls: keys, trust file and registry tools, "
            "and sealed calls from the shell."
        ),
        epilog=(
            "Exit status: 0 success; 1 not found, already present, nothing removed, "
            f"unhealthy or not verified; {EXIT_ERROR} usage error or failure. `call`: 1 an "
            f"HTTP error status, {EXIT_MSCOMM_ERROR} the call failed."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (mscomm_sync) {__version__}"
    )
    add_location_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_key_parsers(sub)
    add_trust_parser(sub, table=format_table)
    add_registry_parser(sub)
    add_call_parser(sub)
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
