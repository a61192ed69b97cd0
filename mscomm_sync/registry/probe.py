"""What one health probe found, and a failed probe's cause in a few words."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from typing import Optional

import attrs
import requests

__all__ = ["ProbeResult", "describe_failure"]

# requests wraps urllib3's errors, which wrap the socket's: a few levels deep.
_MAX_CAUSES = 16


@attrs.frozen(kw_only=True)
class ProbeResult:
    """What one health probe found.

    Attributes:
        passed: the endpoint answered 2xx within the timeout.
        reason: why, in a few words: ``"HTTP 200"``, ``"HTTP 503"``,
            ``"connection refused"``, ``"read timeout (2 s)"``, ...
        status: the HTTP status, if an answer came.
        seconds: how long the probe took, on the poller's clock.
    """

    passed: bool
    reason: str
    status: Optional[int] = None
    seconds: float = 0.0


def describe_failure(exc: requests.RequestException, timeout: float) -> str:
    """Return why a probe that raised ``exc`` failed, for a table or a log line.

    Args:
        exc: what ``requests`` raised.
        timeout: the probe's connect and read timeout, in seconds.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return f"connect timeout ({timeout:g} s)"
    if isinstance(exc, requests.ReadTimeout):
        return f"read timeout ({timeout:g} s)"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "connection closed without an answer"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or type(cause).__name__})"
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return f"timeout ({timeout:g} s)"
    return type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc`` and what it wraps: causes, contexts, and exceptions among its args."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_CAUSES:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError keeps it here
        wrapped = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(e for e in wrapped if isinstance(e, BaseException))
