"""The environ the app sees for a verified request: its plaintext, and only trusted headers.

Trust model: before verification every header is the network's. After it,
the app is given the opened body, the verified sender, and headers it can
trust: in protocol v2 exactly the sealed ones (the caller's end-to-end
headers), plus the transport's ``Host`` and the outer headers the deployment
allowed by name (``outer_headers``, e.g. ``X-Forwarded-For`` from its own
proxies, documented as unauthenticated); every other outer header is
dropped, and a sealed header replaces an outer one of the same name. In v1
only the body, its content type, the method and the endpoint are sealed:
every ``X-Mscomm-*`` header, the envelope's others and the context fields are
dropped, and the rest reach the app unauthenticated. In neither version does
an outer ``X-Mscomm-*`` header reach the app: that prefix is the protocol's,
and only a sealed one (v2) is believed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from ..envelope import ENVELOPE_HEADERS, Opened

__all__ = [
    "CALLER_KEY",
    "DEADLINE_KEY",
    "MESSAGE_ID_KEY",
    "PROTOCOL_KEY",
    "REQUEST_ID_KEY",
    "drop_protocol_headers",
    "environ_key",
    "opened_environ",
]

#: The environ key that holds the verified sender of a sealed request.
CALLER_KEY = "mscomm.caller"
#: The environ key that holds the verified request's message id.
MESSAGE_ID_KEY = "mscomm.message_id"
#: The environ key that holds the protocol version that verified it (``"1"`` or ``"2"``).
PROTOCOL_KEY = "mscomm.protocol"
#: The environ key that holds the caller's deadline (a ``RequestDeadline``), sealed v2 only.
DEADLINE_KEY = "mscomm.deadline"
#: The environ key that holds the caller's ``X-Request-Id``, sealed v2 only.
REQUEST_ID_KEY = "mscomm.request_id"


def environ_key(header: str) -> str:
    """Return the CGI environ key of a request header: ``X-Request-Id`` is ``HTTP_X_REQUEST_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")


#: The environ keys of the protocol's own headers (``X-Mscomm-*``): an outer
#: one is never handed to the app, in either version.
_PROTOCOL_PREFIX = "HTTP_X_MSCOMM_"
_PREFIX_MARK = "\0" + _PROTOCOL_PREFIX
#: What else a verified v1 request loses before the app sees it: the
#: envelope's other headers, the encodings that described the sealed body,
#: and the context fields, which are believed only sealed (v1 seals no
#: header): an outer trace context or deadline beside a v1 seal is anyone's.
_V1_DROP = (
    *(environ_key(h) for h in ENVELOPE_HEADERS),
    "HTTP_TRANSFER_ENCODING",
    "HTTP_CONTENT_ENCODING",
    "HTTP_TRACEPARENT",
    "HTTP_TRACESTATE",
)
_NOT_HEADERS = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})
_ENVELOPE_KEYS = frozenset(environ_key(h) for h in ENVELOPE_HEADERS)


def _may_pass(key: str) -> bool:
    """Whether an outer header a deployment allowed may reach the app: none of the protocol's."""
    return not key.startswith(_PROTOCOL_PREFIX) and key not in _ENVELOPE_KEYS


def drop_protocol_headers(environ: dict[str, Any]) -> None:
    """Remove every protocol header (the envelope's, any ``X-Mscomm-*``) from a plaintext request.

    Only a sealed request carries them meaningfully; on one that reaches the
    app unsealed (an exempt path) they are anyone's, so the app never sees them.
    """
    for key in _ENVELOPE_KEYS:
        environ.pop(key, None)
    _drop_prefixed(environ)


def _drop_prefixed(environ: dict[str, Any]) -> None:
    """Remove every ``X-Mscomm-*`` header's key.

    A request seldom has one left, so their absence is checked in C first (a
    search of the keys joined) rather than by a Python loop over the thirty
    or so keys a server's environ holds.
    """
    try:
        if _PREFIX_MARK not in "\0" + "\0".join(environ):
            return
    except TypeError:
        pass  # a key that is not a string (not WSGI): the loop below says so
    for key in [k for k in environ if k.startswith(_PROTOCOL_PREFIX)]:
        del environ[key]


def opened_environ(
    environ: dict[str, Any], opened: Opened, outer_allowed: Iterable[str]
) -> dict[str, Any]:
    """Rewrite ``environ`` in place for the app: the opened body and the trusted headers.

    The server hands each request its own environ, and nothing reads the
    sealed values after this point, so it is not copied.

    Args:
        environ: the request's environ, its body already read.
        opened: the verified request.
        outer_allowed: environ keys (``HTTP_...``) of the outer headers a
            v2 request keeps; ``X-Mscomm-*`` and envelope headers among them
            are dropped all the same.
    """
    if opened.version == "2":
        keep = {k for k in outer_allowed if _may_pass(k)} | {"HTTP_HOST"}
        for key in [k for k in environ if k.startswith("HTTP_") and k not in keep]:
            del environ[key]
        sealed: dict[str, str] = {}
        for name, value in opened.headers:
            key = environ_key(name)
            if key in _NOT_HEADERS:
                continue
            joiner = "; " if key == "HTTP_COOKIE" else ", "
            sealed[key] = f"{sealed[key]}{joiner}{value}" if key in sealed else value
        environ.update(sealed)  # a sealed header replaces an outer one of its name
    else:
        for key in _V1_DROP:
            environ.pop(key, None)
        _drop_prefixed(environ)
    body = opened.body
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    environ["CONTENT_LENGTH"] = str(len(body))
    if opened.content_type:
        environ["CONTENT_TYPE"] = opened.content_type
    else:
        environ.pop("CONTENT_TYPE", None)
    environ[CALLER_KEY] = opened.sender
    environ[MESSAGE_ID_KEY] = opened.message_id
    environ[PROTOCOL_KEY] = opened.version
    return environ
