"""Collect a WSGI app's response, and shape the responses the middleware sends.

Trust model: headers the app sets are its own business, except the ones that
describe the body (the middleware replaces the body with a sealed one) and the
envelope's own headers, which only the middleware may set: an app, or anything
it proxies, must not be able to make an unsealed answer look sealed.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple, Optional

from .._fast import memo
from ..envelope import ENVELOPE_HEADERS, HEADER_SEALED_BODY, NOT_EXECUTED_CONTENT_TYPE, Sealed
from ..telemetry.context import HEADER_DEADLINE_SPENT

__all__ = [
    "BODILESS_STATUSES",
    "DEADLINE_SPENT",
    "HEADER_SEALED_BODY",
    "NOT_EXECUTED",
    "Answer",
    "AppResponseError",
    "StartResponse",
    "app_headers",
    "collect",
    "error_body",
    "refusal",
    "sealed_headers",
    "sealed_response",
    "status_code",
    "status_line",
    "strip_headers",
    "without_envelope_headers",
]

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

BODILESS_STATUSES = frozenset({204, 304})

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_BODY_HEADERS = frozenset({"content-length", "content-type", "content-encoding"})
#: Only the middleware may set these; an app's copies are dropped (the
#: deadline marker tells a caller, sealed, that the app did not run).
_ENVELOPE = frozenset(
    h.lower() for h in (*ENVELOPE_HEADERS, HEADER_SEALED_BODY, HEADER_DEADLINE_SPENT)
)
_SEALED_DROP = _HOP_BY_HOP | _BODY_HEADERS | _ENVELOPE

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_ERRORS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    413: "payload too large",
    500: "internal server error",
    503: "not run: seal the request again",
    504: "not run: the deadline was spent on arrival",
}


class Answer(NamedTuple):
    """An answer to seal: the status line and code, the headers kept, the body, its type."""

    status: str
    code: int
    headers: list[tuple[str, str]]
    body: bytes
    content_type: Optional[str]


class AppResponseError(Exception):
    """The app broke the WSGI contract (no start_response, bad status, non-bytes)."""


def collect(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, int, list[tuple[str, str]], bytes]:
    """Call ``app`` and collect its status line, status code, headers and whole body.

    The app's iterable is always closed (PEP 3333), even when iterating it
    fails. Since nothing has been sent yet, a second ``start_response`` with
    ``exc_info`` simply replaces the first. A body of one chunk is returned
    as that chunk, not copied.

    Raises:
        Exception: whatever the app raised, or :class:`AppResponseError`.
    """
    chunks: list[bytes] = []
    append = chunks.append
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        if started and not exc_info:
            raise AppResponseError("start_response called twice without exc_info")
        started[:] = [(status, list(headers))]
        return append

    result = app(environ, start_response)
    try:
        for chunk in result:
            if not isinstance(chunk, bytes):
                raise AppResponseError("app yielded a non-bytes chunk")
            if chunk:
                append(chunk)
    finally:
        # A plain list (the usual answer) has no close(); skip the lookup.
        if type(result) is not list:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    if not started:
        raise AppResponseError("app returned without calling start_response")
    status, headers = started[0]
    # join() hands back a lone chunk itself, so a one-chunk body is not copied.
    return status, status_code(status), headers, b"".join(chunks)


def status_code(status: str) -> int:
    """Return the code of a WSGI status line such as ``"200 OK"``.

    Raises:
        AppResponseError: the line does not start with a 3-digit code 100-599.
    """
    if type(status) is str:
        return _known_status(status)  # an app sends a handful of lines, over and over
    return _parse_status(status)


def _parse_status(status: str) -> int:
    head = status[:3]
    if len(status) < 3 or not head.isdigit() or not head.isascii() or status[3:4] not in ("", " "):
        raise AppResponseError("malformed status line")
    code = int(head)
    if not 100 <= code <= 599:
        raise AppResponseError("status code out of range")
    return code


_known_status = memo(128)(_parse_status)


def strip_headers(
    headers: Iterable[tuple[str, str]], drop: frozenset[str]
) -> list[tuple[str, str]]:
    """Return ``headers`` without those whose lower-cased name is in ``drop``."""
    return [(k, v) for k, v in headers if k.lower() not in drop]


def without_envelope_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return ``headers`` without any envelope header an app may have set."""
    return strip_headers(headers, _ENVELOPE)


def app_headers(headers: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], Optional[str]]:
    """Split an app's headers for a sealed answer, in one pass.

    Returns:
        The headers the sealed answer keeps (body, hop-by-hop and envelope
        headers dropped), and the app's first ``Content-Type`` or ``None``.
    """
    kept: list[tuple[str, str]] = []
    content_type: Optional[str] = None
    for name, value in headers:
        lowered = name.lower()
        if lowered not in _SEALED_DROP:
            kept.append((name, value))
        elif content_type is None and lowered == "content-type":
            content_type = value
    return kept, content_type


def sealed_headers(
    kept: list[tuple[str, str]], sealed: Sealed, code: int, *, bodiless: bool
) -> tuple[list[tuple[str, str]], list[bytes]]:
    """Return the headers and body iterable that carry ``sealed``.

    Args:
        kept: the app's headers that the answer keeps (see :func:`app_headers`);
            extended in place and returned.
        sealed: the sealed body and envelope headers.
        code: the status code being sent.
        bodiless: the response may carry no body (HEAD, 1xx, 204, 304); the
            sealed body then travels in :data:`HEADER_SEALED_BODY`.
    """
    kept.extend(sealed.headers.items())
    if bodiless:
        encoded = base64.urlsafe_b64encode(sealed.body).rstrip(b"=").decode("ascii")
        kept.append((HEADER_SEALED_BODY, encoded))
        if not (100 <= code < 200 or code in BODILESS_STATUSES):
            kept.append(("Content-Length", "0"))
        return kept, []
    chunks = sealed.chunks
    if len(chunks) == 1:  # v1, and a small v2 body: no properties to run
        kept.append(("Content-Length", str(len(chunks[0]))))
        return kept, [chunks[0]]
    kept.append(("Content-Length", str(sealed.length)))
    return kept, list(sealed.pieces)


def sealed_response(
    status: str, app_headers: Iterable[tuple[str, str]], sealed: Sealed, *, bodiless: bool
) -> tuple[list[tuple[str, str]], list[bytes]]:
    """Return the headers and body iterable that carry ``sealed``.

    Args:
        status: the status line being sent.
        app_headers: the app's headers; body, hop-by-hop and envelope headers
            are dropped.
        sealed: the sealed body and envelope headers.
        bodiless: the response may carry no body (HEAD, 1xx, 204, 304); the
            sealed body then travels in :data:`HEADER_SEALED_BODY`.
    """
    kept = strip_headers(app_headers, _SEALED_DROP)
    return sealed_headers(kept, sealed, int(status[:3]), bodiless=bodiless)


def refusal(status: int) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    """Return the fixed unsealed answer for a refusal status.

    Every refusal with one status has the same body, whatever the reason, so
    a peer learns nothing beyond the status. The lists are new on every call
    (a server may add to the headers); their contents are built once.
    """
    line, body, length = _refusal_parts(status)
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", length),
        ("Cache-Control", "no-store"),
    ]
    return line, headers, [body]


@functools.cache
def _refusal_parts(status: int) -> tuple[str, bytes, str]:
    body = error_body(status)
    return status_line(status), body, str(len(body))


@functools.cache
def error_body(status: int) -> bytes:
    """Return the small JSON body used for an error the middleware produces."""
    return json.dumps({"error": _ERRORS[status]}).encode("ascii")


def status_line(status: int) -> str:
    """Return the status line of a status this module knows."""
    return f"{status} {_REASONS[status]}"


#: The middleware's own sealed answer to a verified request it did not run
#: because its replay store began after the request was sealed: the caller
#: seals the request again (in a second: ``Retry-After``).
NOT_EXECUTED = Answer(
    status_line(503),
    503,
    [("Retry-After", "1"), ("Cache-Control", "no-store")],
    error_body(503),
    NOT_EXECUTED_CONTENT_TYPE,
)


#: The middleware's own sealed answer to a verified request that arrived with
#: its caller's deadline already spent: not run, and marked so inside the seal.
DEADLINE_SPENT = Answer(
    status_line(504),
    504,
    [(HEADER_DEADLINE_SPENT, "true"), ("Cache-Control", "no-store")],
    error_body(504),
    "application/json",
)
