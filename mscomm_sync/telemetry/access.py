"""The access logs: one line per call (client) and per request (server), when asked for.

They are off unless a :class:`~.options.Telemetry` has ``access_log=True``
(or ``$MSCOMM_ACCESS_LOG`` is on), and then written at INFO to their own
loggers, so that they can be routed on their own. A line names the method,
the service or route (never the query, which may carry data), the status or
error, the duration, the attempts and the request id; it never holds a
payload, a header value or a key. Every field is also in the record's
``extra`` under a stable ``mscomm.*`` name.
"""

from __future__ import annotations

import logging
from typing import Optional

__all__ = ["client_log", "log_call", "log_request", "server_log"]

client_log = logging.getLogger("mscomm_sync.access.client")
server_log = logging.getLogger("mscomm_sync.access.server")


def log_call(
    *,
    service: str,
    target: str,
    method: str,
    path: str,
    outcome: str,
    status: Optional[int],
    duration: float,
    attempts: int,
    instance: Optional[str],
    request_id: str,
) -> None:
    """Write one call's line to ``mscomm_sync.access.client``."""
    if not client_log.isEnabledFor(logging.INFO):
        return
    client_log.info(
        "call %s %s %s -> %s in %.3fs (attempts=%d request_id=%s)",
        method, target, path, outcome, duration, attempts, request_id,
        extra={
            "mscomm.event": "call",
            "mscomm.service": service,
            "mscomm.target": target,
            "mscomm.method": method,
            "mscomm.route": path,
            "mscomm.outcome": outcome,
            "mscomm.status": status,
            "mscomm.duration": duration,
            "mscomm.attempts": attempts,
            "mscomm.instance": instance,
            "mscomm.request_id": request_id,
        },
    )  # fmt: skip


def log_request(
    *,
    service: str,
    method: Optional[str],
    route: str,
    status: Optional[int],
    duration: float,
    caller: Optional[str],
    protocol: Optional[str],
    request_id: Optional[str],
) -> None:
    """Write one request's line to ``mscomm_sync.access.server``."""
    if not server_log.isEnabledFor(logging.INFO):
        return
    server_log.info(
        "request %s %s -> %s in %.3fs (caller=%s protocol=%s request_id=%s)",
        method, route, status if status is not None else "-", duration, caller, protocol,
        request_id,
        extra={
            "mscomm.event": "request",
            "mscomm.service": service,
            "mscomm.method": method,
            "mscomm.route": route,
            "mscomm.status": status,
            "mscomm.duration": duration,
            "mscomm.caller": caller,
            "mscomm.protocol": protocol,
            "mscomm.request_id": request_id,
        },
    )  # fmt: skip
