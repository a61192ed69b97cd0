"""WSGI apps for the deadline test, served by gunicorn in their own processes.

Each is a factory, so importing this module does nothing. Keys, names and
callers come from the environment the test sets; each handler appends one
JSON line about what it saw to ``$MSCOMM_TEST_REPORT`` (one ``O_APPEND``
write, so lines from workers do not interleave).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Optional

from mscomm_sync import MicroServiceClient, MscommError, current_deadline
from mscomm_sync.registry import FileRegistry
from mscomm_sync.wsgi import EncryptionMiddleware

REPORT_ENV = "MSCOMM_TEST_REPORT"
REGISTRY_ENV = "MSCOMM_TEST_REGISTRY"
_client: Optional[MicroServiceClient] = None


def report(**fields: Any) -> None:
    fd = os.open(os.environ[REPORT_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(fields) + "\n").encode())
    finally:
        os.close(fd)


def _answer(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def middle(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """billing: calls ledger with a timeout of its own of 5 s, and reports how that ended."""
    if environ["PATH_INFO"] == "/health":
        return _answer(start_response, "200 OK", {})
    assert _client is not None
    deadline = current_deadline()
    started = time.monotonic()
    try:
        _client.request(target_service="ledger", endpoint="/slow", method="POST", timeout=5)
        outcome = "answered"
    except MscommError as exc:
        outcome = type(exc).__name__
    report(
        who="billing",
        budget=None if deadline is None else deadline.budget,
        outcome=outcome,
        elapsed=time.monotonic() - started,
    )
    return _answer(start_response, "504 Gateway Timeout", {"outcome": outcome})


def last(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """ledger: would work for 5 s, but stops when its caller's deadline does."""
    if environ["PATH_INFO"] == "/health":
        return _answer(start_response, "200 OK", {})
    deadline = current_deadline()
    started = time.monotonic()
    report(who="ledger", budget=None if deadline is None else deadline.budget)
    wait = 5.0 if deadline is None else min(5.0, max(deadline.remaining(), 0.0))
    threading.Event().wait(wait)
    report(who="ledger done", elapsed=time.monotonic() - started)
    return _answer(start_response, "200 OK", {"waited": wait})


def middle_app() -> Callable[..., Any]:
    global _client
    # Built here, in the worker as it starts, so no request pays for it.
    _client = MicroServiceClient("billing", registry=FileRegistry(os.environ[REGISTRY_ENV]))
    return EncryptionMiddleware(middle)


def last_app() -> Callable[..., Any]:
    return EncryptionMiddleware(last)
