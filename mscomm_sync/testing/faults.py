"""Transport failures, shaped exactly as ``requests`` raises them for real.

A mocked service uses these to fail an attempt the way a real network does,
so that the client's retry logic sees the same exception, with the same
urllib3 cause, as it would in production. Which phase a failure belongs to
matters: only a failure to *connect* proves that the request never reached
the server, and only then may a non-idempotent call be retried.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

__all__ = ["CONNECT_PHASE", "FAULTS", "transport_error"]

#: Every fault kind a mocked service can inject.
FAULTS = frozenset({"refused", "connect_timeout", "read_timeout", "reset"})
#: The kinds that prove the request never reached the server.
CONNECT_PHASE = frozenset({"refused", "connect_timeout"})


def transport_error(kind: str, request: requests.PreparedRequest) -> requests.RequestException:
    """Return the exception ``requests`` raises for a ``kind`` failure of ``request``.

    Args:
        kind: one of :data:`FAULTS`:

            * ``"refused"``: the connection was refused (nothing listens);
            * ``"connect_timeout"``: connecting timed out;
            * ``"read_timeout"``: the request was sent, no answer came in time;
            * ``"reset"``: the connection was reset after the request was sent.
        request: the request that failed.

    Returns:
        A :class:`requests.ConnectionError`, :class:`requests.ConnectTimeout`
        or :class:`requests.ReadTimeout` wrapping the urllib3 error that
        urllib3 would raise, for the caller to raise.

    Raises:
        ValueError: ``kind`` is not one of :data:`FAULTS`.
    """
    url = request.url or "http://localhost/"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    pool = HTTPConnectionPool(host, port)
    path = parts.path or "/"
    if kind == "refused":
        refused = NewConnectionError(
            HTTPConnection(host, port),
            "Failed to establish a new connection: [Errno 111] Connection refused",
        )
        # urllib3 raises it from the socket's error; the client reads that cause.
        refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
        return requests.ConnectionError(MaxRetryError(pool, path, refused), request=request)
    if kind == "connect_timeout":
        slow = ConnectTimeoutError(HTTPConnection(host, port), f"Connection to {host} timed out.")
        return requests.ConnectTimeout(MaxRetryError(pool, path, slow), request=request)
    if kind == "read_timeout":
        return requests.ReadTimeout(
            ReadTimeoutError(pool, path, "Read timed out."), request=request
        )
    if kind == "reset":
        reset = ConnectionResetError(104, "Connection reset by peer")
        return requests.ConnectionError(
            ProtocolError("Connection aborted.", reset), request=request
        )
    raise ValueError(f"unknown fault {kind!r}: use one of {sorted(FAULTS)}")
