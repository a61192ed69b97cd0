"""``mscomm call SERVICE METHOD PATH``: one sealed call from the shell, as ``dapr invoke`` does.

The command calls as a service of the fleet (``--as NAME``, else
``$SERVICE_NAME``), with that service's keys read from the environment
exactly as the service itself reads them (``<NAME>_PRIVATE_KEY``,
``$MSCOMM_TRUST`` or ``<TARGET>_PUBLIC_KEY``; v1: ``<TARGET>_ENCRYPTION_KEY``)
and the registry of the global ``--registry`` or ``$MSCOMM_REGISTRY``. The
call is the library's own: sealed, retried, failed over and bounded by its
deadline like any other. Anyone who can run it with those variables can call
as that service, which is what holding its private key means anyway; keys
are never read from the command line, and never printed.

It prints the opened answer's body on stdout (``--include``: the status line
and the answer's headers first, as ``curl -i`` does, one per line; the global ``--json``:
one JSON object). A call that fails with an :class:`~mscomm_sync.MscommError`
prints the error's message and its fields on stderr, one ``name: value`` per
line, or (global ``--json``) one JSON object.

Exit status: 0 an answer below 400; 1 an HTTP error status (its body is
still printed); 2 a usage error; 3 an ``MscommError``.
"""

from __future__ import annotations

import argparse
import base64
import enum
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from requests import Response

from .errors import MscommError

__all__ = ["EXIT_HTTP_ERROR", "EXIT_MSCOMM_ERROR", "EXIT_OK", "EXIT_USAGE", "add_parser"]

#: An answer below 400.
EXIT_OK = 0
#: The service answered with an HTTP error status (400 or more).
EXIT_HTTP_ERROR = 1
#: A usage error (as argparse reports them).
EXIT_USAGE = 2
#: The call raised an :class:`~mscomm_sync.MscommError`.
EXIT_MSCOMM_ERROR = 3

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_METHOD = re.compile(r"[A-Za-z]{1,16}\Z")
_SCALARS = (str, int, float, bool, type(None))


def add_parser(subparsers: Any) -> None:
    """Add the ``call`` subcommand to ``subparsers``."""
    call = subparsers.add_parser(
        "call",
        help="make one sealed call to a service and print its answer",
        description=(
            "Call METHOD PATH on SERVICE, sealed, as the service named by --as or "
            "$SERVICE_NAME (its keys read from the environment, as the service reads them), "
            "through the registry of the global --registry or $MSCOMM_REGISTRY, and print "
            "the opened answer's body. The global --json (before `call`) prints the answer, "
            "or the error, as one JSON object; `call --json BODY` sends a JSON body."
        ),
        epilog=(
            f"Exit status: {EXIT_OK} an answer below 400; {EXIT_HTTP_ERROR} an HTTP error "
            f"status (the body is still printed); {EXIT_USAGE} a usage error; "
            f"{EXIT_MSCOMM_ERROR} the call failed (the error and its fields on stderr)."
        ),
    )
    call.add_argument("service", metavar="SERVICE", help="the service to call")
    call.add_argument(
        "method", metavar="METHOD", type=_method, help="the HTTP method (GET, POST, ...)"
    )
    call.add_argument(
        "path", metavar="PATH", help="the path on that service, with its query: /charge?x=1"
    )
    body = call.add_mutually_exclusive_group()
    body.add_argument(
        "--json",
        dest="json_body",
        type=_json_text,
        metavar="BODY",
        help="send BODY, which must be JSON, as application/json",
    )
    body.add_argument(
        "-d",
        "--data",
        type=_data,
        metavar="BODY",
        help=(
            "send BODY as it is (application/octet-stream unless -H sets a Content-Type); "
            "@FILE sends the file's bytes, @- standard input's"
        ),
    )
    call.add_argument(
        "-H",
        "--header",
        dest="headers",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send this header (sealed, in protocol v2); repeat for several",
    )
    call.add_argument(
        "--timeout", type=_seconds, metavar="S", help="the call's deadline in seconds"
    )
    call.add_argument(
        "--idempotency-key",
        metavar="K",
        help="name the request, so a service that honours keys runs it at most once",
    )
    call.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="print the status line and the answer's headers (v2: the sealed ones) first",
    )
    call.add_argument(
        "--as",
        dest="caller",
        metavar="NAME",
        help="call as this service (default: $SERVICE_NAME)",
    )
    call.add_argument(
        "--registry",
        metavar="LOCATION",
        default=argparse.SUPPRESS,
        help="the registry, as the global --registry (which it overrides)",
    )
    call.set_defaults(func=_call, call_parser=call)


# -- what the arguments must be ----------------------------------------------


def _method(text: str) -> str:
    if not _METHOD.match(text):
        raise argparse.ArgumentTypeError(f"invalid method {text!r}: use GET, POST, ...")
    return text.upper()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: a number of seconds above 0")
    return value


def _json_text(text: str) -> bytes:
    try:
        json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"the --json body is not JSON: {exc}") from None
    return text.encode("utf-8")


def _data(text: str) -> bytes:
    if not text.startswith("@"):
        return text.encode("utf-8")
    name = text[1:]
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as file:
            return file.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot read the --data file {name!r}: {exc.strerror}"
        ) from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    # Never echo the argument: a header may carry a token.
    if not colon or not _TOKEN.match(name):
        raise argparse.ArgumentTypeError("invalid header: write 'Name: value'")
    if any(c in value for c in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"invalid header {name}: its value spans lines")
    return name, value


# -- the call -----------------------------------------------------------------


def _call(args: argparse.Namespace) -> int:
    caller = args.caller if args.caller is not None else os.environ.get("SERVICE_NAME", "")
    if not caller.strip():
        args.call_parser.error("no caller: pass --as NAME or set SERVICE_NAME")
    headers: dict[str, str] = {}
    for name, value in args.headers:
        match = next((k for k in headers if k.lower() == name.lower()), name)
        headers[match] = f"{headers[match]}, {value}" if match in headers else value
    payload = args.json_body if args.json_body is not None else args.data
    if args.json_body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    try:
        with _logging(quiet=args.json), _client(caller.strip(), args.registry) as client:
            response = client.call(
                args.service,
                args.path,
                args.method,
                payload,
                headers=headers or None,
                timeout=args.timeout,
                idempotency_key=args.idempotency_key,
            )
    except MscommError as exc:
        _report(exc, as_json=args.json)
        return EXIT_MSCOMM_ERROR
    _print_answer(response, include=args.include, as_json=args.json)
    return EXIT_OK if response.status_code < 400 else EXIT_HTTP_ERROR


@contextmanager
def _client(caller: str, location: Optional[str]) -> Iterator[Any]:
    """A client calling as ``caller``, on the registry at ``location`` (read, never created)."""
    from .client import MicroServiceClient
    from .registry import open_registry

    registry = open_registry(location)
    try:
        client = MicroServiceClient(caller, registry=registry)
        try:
            yield client
        finally:
            client.close()
    finally:
        registry.close()


@contextmanager
def _logging(*, quiet: bool) -> Iterator[None]:
    """Show the library's warnings (failover, refusals) on stderr while the call runs.

    Unless logging is set up already (then it is left alone), and unless
    stderr must hold one JSON object only.
    """
    logger = logging.getLogger("mscomm_sync")
    if logging.getLogger().handlers or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mscomm: %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


# -- what it prints ------------------------------------------------------------


def _fields(exc: MscommError) -> dict[str, Any]:
    """The error's type, message, delivery and structured fields, as JSON values.

    ``last_error`` (the foreign exception) is left out: ``reason`` names it.
    """
    found: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    delivery = getattr(exc, "delivery", None)
    if isinstance(delivery, enum.Enum):
        found["delivery"] = delivery.value
    for name, value in vars(exc).items():
        if name.startswith("_") or name == "last_error":
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, _SCALARS):
            found[name] = value
    return found


def _report(exc: MscommError, *, as_json: bool) -> None:
    fields = _fields(exc)
    if as_json:
        print(json.dumps(fields), file=sys.stderr)
        return
    message = fields.pop("message")
    lines = [f"mscomm: error: {message}"]
    lines += [f"{name}: {'-' if value is None else value}" for name, value in fields.items()]
    print("\n".join(lines), file=sys.stderr)


def _print_answer(response: Response, *, include: bool, as_json: bool) -> None:
    body = response.content or b""
    if as_json:
        answer: dict[str, Any] = {
            "status": response.status_code,
            "reason": response.reason,
            "headers": dict(response.headers),
        }
        try:
            answer["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            answer["body"] = None
            answer["body_base64"] = base64.b64encode(body).decode("ascii")
        print(json.dumps(answer))
        return
    out = sys.stdout.buffer
    if include:
        version = getattr(response.raw, "version", 11)
        head = [f"HTTP/{version // 10}.{version % 10} {response.status_code} {response.reason}"]
        head += [f"{name}: {value}" for name, value in response.headers.items()]
        out.write(("\n".join(head) + "\n\n").encode("latin-1", "replace"))
    out.write(body)
    out.flush()
