"""``mscomm trust init|add|remove|callers|root|sign|verify|show``: manage a trust file.

Trust model: the trust file says which public key speaks for which service,
so an edit is a change of who may impersonate whom. Every edit therefore
raises ``serial`` and drops the signature: a service that pins a trust root
accepts the new version only once the root's holder has signed it again. The
root's private key is read from a variable or from standard input, never
from the command line, and is printed only once, by ``trust root``.

Writes are atomic: a temporary file in the same directory, ``fsync``-ed and
renamed over the file, whose mode is kept. ``--json`` is accepted before the
subcommand (``mscomm --json trust show FILE``) or after it.

Exit status: 0 done; 1 the file was read and the answer is no (already
present, nothing to remove, not verified, the file exists); 2 usage errors
and failures (an unreadable or malformed file, a malformed key).
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import getpass
import json
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ..errors import ConfigurationError
from ..keyring import validate_service_name
from .document import FORMAT, SCHEMA, TrustDocument, TrustError, format_time, parse
from .keys import PublicKey, parse_key
from .signing import ROOT_ENV, RootKey, generate_root, parse_roots, root_key_id, sign, verify

__all__ = ["EXIT_ERROR", "EXIT_NO", "EXIT_OK", "Table", "add_parser", "read_secret"]

#: The same exit statuses as ``mscomm registry``.
EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2
#: Formats aligned rows (``mscomm_sync.registry.table.format_table``, which
#: this layer may not import: ``mscomm_sync.cli`` passes it in).
Table = Callable[[Sequence[str], Sequence[Sequence[str]]], str]
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")


def read_secret(
    variable: Optional[str], *, what: str, option: str = "--from-env"
) -> tuple[str, str]:
    """Return a secret's text and where it came from: the variable, else one line of stdin.

    A terminal is read without echo. The text never appears in a message.

    Raises:
        ConfigurationError: the variable is unset, or stdin gave nothing.
    """
    if variable is not None:
        value = os.environ.get(variable)
        if value is None:
            raise ConfigurationError(f"{variable} is not set", variable=variable, reason="missing")
        return value, variable
    if sys.stdin is not None and sys.stdin.isatty():
        line = getpass.getpass(f"{what}: ")
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        raise ConfigurationError(
            f"no {what} on standard input (or name the variable that holds it: {option} VAR)",
            variable="stdin",
            reason="missing",
        )
    return line.strip(), "standard input"


def _not_after(text: str) -> str:
    moment = text + "T00:00:00Z" if _DAY.match(text) else text
    try:
        if not _MOMENT.match(moment):
            raise ValueError
        seconds = calendar.timegm(time.strptime(moment, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"
        ) from None
    return format_time(seconds)


def add_parser(subparsers: Any, *, table: Table) -> None:
    """Add the ``trust`` subcommand and its own subcommands to ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of text"
    )
    trust = subparsers.add_parser(
        "trust",
        parents=[common],
        help="edit, sign, verify and show a trust file (protocol v2's public keys)",
        description=(
            "Edit, sign, verify and show a trust file. Every edit raises its serial and drops "
            "its signature: sign it again. Exit status: 0 success, 1 already present / nothing "
            "to remove / not verified / the file exists, 2 usage error or failure."
        ),
    )
    sub = trust.add_subparsers(dest="trust_command", metavar="ACTION")
    sub.required = True

    def action(name: str, help: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=help, description=description
        )
        parser.set_defaults(table=table)
        return parser

    init = action("init", "write an empty trust file", "Write an empty trust file (serial 0).")
    init.add_argument("file", metavar="FILE")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_init)

    add = action(
        "add",
        "add a public key to a service",
        "Add a public key to SERVICE (created if absent), last unless --first. Callers seal "
        "to a service's first key that is still valid; every listed key is accepted.",
    )
    add.add_argument("file", metavar="FILE")
    add.add_argument("service", metavar="SERVICE")
    add.add_argument(
        "public_key", metavar="PUBLIC_KEY", help="put '--' before a key that begins with '-'"
    )
    add.add_argument(
        "--not-after",
        type=_not_after,
        metavar="WHEN",
        help="YYYY-MM-DD (midnight UTC, at its start) or YYYY-MM-DDTHH:MM:SSZ: "
        "the key is not trusted after it",
    )
    add.add_argument(
        "--first", action="store_true", help="put it first: callers seal to it (a rotation)"
    )
    add.set_defaults(func=_add)

    remove = action(
        "remove",
        "remove a key, or a whole service",
        "Remove the key KEY_ID of SERVICE, or SERVICE itself without KEY_ID. "
        "Exit status 1 if there is nothing to remove.",
    )
    remove.add_argument("file", metavar="FILE")
    remove.add_argument("service", metavar="SERVICE")
    remove.add_argument("key_id", nargs="?", metavar="KEY_ID")
    remove.set_defaults(func=_remove)

    callers = action(
        "callers",
        "set who may call a service",
        "Replace the services that may call SERVICE with NAME...; none means no one may. "
        "--clear removes the list: the middleware's allowed_callers or $MSCOMM_CALLERS decide.",
    )
    callers.add_argument("file", metavar="FILE")
    callers.add_argument("service", metavar="SERVICE")
    callers.add_argument("names", nargs="*", metavar="NAME")
    callers.add_argument("--clear", action="store_true", help="remove the list instead")
    callers.set_defaults(func=_callers)

    root = action(
        "root",
        "make a trust root (an Ed25519 key pair)",
        f"Print a fresh trust root's private key on stdout (keep it offline: it only signs) "
        f"and its public key and root key id on stderr (the public key goes in ${ROOT_ENV}).",
    )
    root.set_defaults(func=_root)

    signer = action(
        "sign",
        "sign a trust file with a trust root",
        "Sign FILE with the root whose private key is in VAR (else one line of stdin).",
    )
    signer.add_argument("file", metavar="FILE")
    signer.add_argument("--root-key-from-env", metavar="VAR", help="the root's private key")
    signer.set_defaults(func=_sign)

    verifier = action(
        "verify",
        "check that a trust file is signed by a pinned root",
        f"Exit 0 if FILE parses and one of the roots (--root, else ${ROOT_ENV}) signed it, 1 "
        "if not. With no root at all, only check that it parses.",
    )
    verifier.add_argument("file", metavar="FILE")
    verifier.add_argument(
        "--root",
        action="append",
        metavar="PUBLIC_KEY",
        help="a root's public key (write --root=KEY: a key may begin with '-'); repeatable",
    )
    verifier.set_defaults(func=_verify)

    show = action(
        "show",
        "show a trust file's serial, signature and services",
        "Show FILE: its serial, its signature (checked against $MSCOMM_TRUST_ROOT when set), "
        "and each service's keys in order: current (callers seal to it), valid, or expired.",
    )
    show.add_argument("file", metavar="FILE")
    show.set_defaults(func=_show)


# -- reading and writing ------------------------------------------------------


def _read(path: str) -> TrustDocument:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read trust file {path}: {exc.strerror or type(exc).__name__}",
            reason="unreadable",
        ) from None
    try:
        return parse(data)
    except TrustError as exc:
        raise ConfigurationError(
            f"{path} is not a valid trust file: {exc}", reason="invalid trust file"
        ) from None


def _write(path: str, document: dict[str, Any], *, exclusive: bool = False) -> None:
    """Write ``document`` atomically; ``exclusive``: never over an existing file."""
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
    parse(data)  # never write what no reader would accept
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, target)  # fails if the name exists, with no window between check and use
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _save(path: str, document: dict[str, Any], *, exclusive: bool = False) -> None:
    try:
        _write(path, document, exclusive=exclusive)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write trust file {path}: {exc.strerror or type(exc).__name__}",
            reason="unwritable",
        ) from None


def _commit(args: argparse.Namespace, before: TrustDocument, raw: dict[str, Any]) -> int:
    """Write an edited document: serial + 1, signature dropped, both said on stderr."""
    raw.pop("signature", None)
    raw["serial"] = before.serial + 1
    _save(args.file, raw)
    dropped = "the signature was dropped" if before.signature is not None else "it is unsigned"
    _complain(
        f"{args.file} is now serial {raw['serial']}; {dropped}: sign it "
        f"(mscomm trust sign {args.file} --root-key-from-env VAR)"
    )
    return EXIT_OK


def _complain(message: str) -> None:
    print(f"mscomm: {message}", file=sys.stderr)


def _states(keys: Sequence[PublicKey], now: float) -> list[str]:
    """Each key's state: the first valid one is current (callers seal to it)."""
    states, current = [], False
    for key in keys:
        if not key.valid_at(now):
            states.append("expired")
        else:
            states.append("valid" if current else "current")
            current = True
    return states


def _sealed_to(args: argparse.Namespace, service: str) -> str:
    entry = _read(args.file).services.get(service)
    keys = entry.keys if entry is not None else ()
    states = _states(keys, time.time())
    if "current" not in states:
        return f"{service} has no valid key: no caller can seal to it"
    return f"callers seal to {keys[states.index('current')].kid}"


# -- edits ----------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    empty = {"format": FORMAT, "version": SCHEMA, "serial": 0, "services": {}}
    try:
        _save(args.file, empty, exclusive=not args.force)
    except FileExistsError:
        _complain(f"{args.file} exists; nothing written (--force overwrites it)")
        return EXIT_NO
    _report(args, f"wrote an empty trust file {args.file} (serial 0)", serial=0)
    return EXIT_OK


def _report(args: argparse.Namespace, text: str, **data: Any) -> None:
    if args.json:
        print(json.dumps({"file": args.file, **data}, sort_keys=True))
    else:
        print(text)


def _add(args: argparse.Namespace) -> int:
    service = validate_service_name(args.service)
    key = PublicKey.from_text(args.public_key, source="PUBLIC_KEY")
    before = _read(args.file)
    for name, entry in before.services.items():
        if any(k.kid == key.kid for k in entry.keys):
            _complain(f"{name} already has key {key.kid} in {args.file}; nothing changed")
            return EXIT_NO
    raw = json.loads(json.dumps(before.raw))
    keys = raw["services"].setdefault(service, {"keys": []})["keys"]
    item = {"id": key.kid, "public_key": key.text}
    if args.not_after is not None:
        item["not_after"] = args.not_after
    keys.insert(0 if args.first else len(keys), item)
    status = _commit(args, before, raw)
    position = 1 if args.first else len(keys)
    _report(
        args,
        f"added key {key.kid} to {service} (key {position} of {len(keys)}); "
        + _sealed_to(args, service),
        serial=raw["serial"],
        service=service,
        key_id=key.kid,
        position=position,
    )
    return status


def _remove(args: argparse.Namespace) -> int:
    before = _read(args.file)
    raw = json.loads(json.dumps(before.raw))
    entry = before.services.get(args.service)
    if entry is None:
        listed = ", ".join(sorted(before.services)) or "none"
        _complain(f"no service {args.service!r} in {args.file} (services: {listed})")
        return EXIT_NO
    if args.key_id is None:
        del raw["services"][args.service]
        removed = [k.kid for k in entry.keys]
        text = f"removed service {args.service} ({len(removed)} key(s))"
    else:
        keys = raw["services"][args.service]["keys"]
        kept = [k for k in keys if k["id"] != args.key_id]
        if len(kept) == len(keys):
            kids = ", ".join(k.kid for k in entry.keys) or "none"
            _complain(
                f"{args.service} has no key {args.key_id!r} in {args.file} (its keys: {kids})"
            )
            return EXIT_NO
        raw["services"][args.service]["keys"] = kept
        removed = [args.key_id]
        text = f"removed key {args.key_id} from {args.service}"
    status = _commit(args, before, raw)
    if args.key_id is not None:
        text += "; " + _sealed_to(args, args.service)
    _report(args, text, serial=raw["serial"], service=args.service, removed=removed)
    return status


def _callers(args: argparse.Namespace) -> int:
    if args.clear and args.names:
        raise ConfigurationError("give caller names or --clear, not both", reason="usage")
    names = sorted({validate_service_name(n, what="caller") for n in args.names})
    before = _read(args.file)
    if args.service not in before.services:
        _complain(f"no service {args.service!r} in {args.file}: add its key first (trust add)")
        return EXIT_NO
    raw = json.loads(json.dumps(before.raw))
    entry = raw["services"][args.service]
    wanted = None if args.clear else names
    current = entry.get("callers")
    if (sorted(current) if current is not None else None) == wanted:
        _report(args, f"{args.service}'s callers are unchanged", serial=before.serial)
        return EXIT_OK
    if wanted is None:
        entry.pop("callers", None)
        text = f"{args.service} has no callers list: allowed_callers or $MSCOMM_CALLERS decide"
    else:
        entry["callers"] = wanted
        text = f"{args.service} may be called by {', '.join(wanted) or 'no one'}"
    status = _commit(args, before, raw)
    _report(args, text, serial=raw["serial"], service=args.service, callers=wanted)
    return status


# -- roots and signatures ---------------------------------------------------------


def _root(args: argparse.Namespace) -> int:
    private, public = generate_root()
    kid = root_key_id(parse_key(public, source="the new root", what="trust root"))
    if args.json:
        print(json.dumps({"private_key": private, "public_key": public, "key_id": kid}))
        return EXIT_OK
    print(private)
    print(f"public key {public}  root key id {kid}", file=sys.stderr)
    print(
        f"the private key (stdout) signs trust files: keep it offline; "
        f"the public key goes in {ROOT_ENV} on every service",
        file=sys.stderr,
    )
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    text, source = read_secret(
        args.root_key_from_env, what="trust root private key", option="--root-key-from-env"
    )
    pinned, _ = _pinned(None)  # a malformed $MSCOMM_TRUST_ROOT stops us before writing
    document = _read(args.file)
    signed = sign(document.raw, text, source=source)
    kid = signed["signature"]["key_id"]
    _save(args.file, signed)
    if pinned and kid not in {r.kid for r in pinned}:
        _complain(f"warning: root {kid} is not one of the roots pinned in ${ROOT_ENV} here")
    _report(
        args,
        f"signed {args.file} (serial {document.serial}) with root {kid}",
        serial=document.serial,
        root_key_id=kid,
    )
    return EXIT_OK


def _pinned(given: Optional[list[str]]) -> tuple[tuple[RootKey, ...], str]:
    """The roots to check against, and where they came from."""
    if given:
        return tuple(r for value in given for r in parse_roots(value, source="--root")), "--root"
    value = os.environ.get(ROOT_ENV, "")
    if value.strip():
        return parse_roots(value), f"${ROOT_ENV}"
    return (), ""


def _checked(document: TrustDocument, roots: tuple[RootKey, ...]) -> tuple[Optional[bool], str]:
    """Whether one of ``roots`` signed it (``None``: no root to check with), and why not."""
    if not roots:
        return None, ""
    try:
        verify(document, roots)
    except TrustError as exc:
        return False, str(exc)
    return True, ""


def _signature_text(document: TrustDocument, verified: Optional[bool], why: str, src: str) -> str:
    signed = document.signature
    state = "unsigned" if signed is None else f"signed by root {signed[0]}"
    if verified is None:
        return f"{state}; not checked (no trust root: pass --root or set ${ROOT_ENV})"
    return f"{state}; verified against {src}" if verified else f"{state}; NOT verified: {why}"


def _verify(args: argparse.Namespace) -> int:
    roots, src = _pinned(args.root)
    try:
        document = _read(args.file)
    except ConfigurationError as exc:
        if exc.reason != "invalid trust file":
            raise
        if args.json:
            print(json.dumps({"file": args.file, "valid": False, "reason": str(exc)}))
        _complain(str(exc))
        return EXIT_NO
    verified, why = _checked(document, roots)
    if args.json:
        print(json.dumps(_signature_data(args.file, document, verified, why)))
    else:
        line = f"{args.file}: serial {document.serial}, "
        line += _signature_text(document, verified, why, src)
        if verified is False:
            _complain(line)
        else:
            print(line)
    return EXIT_NO if verified is False else EXIT_OK


def _signature_data(
    path: str, document: TrustDocument, verified: Optional[bool], why: str
) -> dict[str, Any]:
    return {
        "file": path,
        "valid": True,
        "serial": document.serial,
        "signed": document.signature is not None,
        "root_key_id": document.signature[0] if document.signature is not None else None,
        "verified": verified,
        "reason": why or None,
    }


def _show(args: argparse.Namespace) -> int:
    document = _read(args.file)
    roots, src = _pinned(None)
    verified, why = _checked(document, roots)
    now = time.time()
    if args.json:
        data = _signature_data(args.file, document, verified, why)
        data["services"] = {
            name: {
                "callers": sorted(entry.callers) if entry.callers is not None else None,
                "keys": [
                    {
                        "id": key.kid,
                        "public_key": key.text,
                        "not_after": (
                            format_time(key.not_after) if key.not_after is not None else None
                        ),
                        "state": state,
                    }
                    for key, state in zip(entry.keys, _states(entry.keys, now))
                ],
            }
            for name, entry in sorted(document.services.items())
        }
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{args.file}: serial {document.serial}, {_signature_text(document, verified, why, src)}")
    rows = []
    for name, entry in sorted(document.services.items()):
        if entry.callers is None:
            callers = "(unset)"
        else:
            callers = ",".join(sorted(entry.callers)) or "(no one)"
        if not entry.keys:
            rows.append([name, "(no key)", "-", "-", callers])
        for key, state in zip(entry.keys, _states(entry.keys, now)):
            until = format_time(key.not_after) if key.not_after is not None else "-"
            rows.append([name, key.kid, state, until, callers])
    if rows:
        print(args.table(["SERVICE", "KEY ID", "STATE", "NOT AFTER", "CALLERS"], rows))
    else:
        print("no services")
    return EXIT_OK
