"""What the middleware logs, to ``mscomm_sync.wsgi``, and how it keeps logs safe.

Trust model: a refused request's headers are unverified and attacker-chosen;
they are logged only bounded and printable, so they cannot forge log lines or
flood the log. Plaintext, ciphertext and keys are never logged; the query
string is left out of routes because it may carry data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Optional

from ..envelope import claimed_ids, target_from_environ

__all__ = ["log", "log_app_failure", "log_refusal", "request_id"]

log = logging.getLogger("mscomm_sync.wsgi")

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}\Z")


def log_refusal(
    status: int,
    reason: str,
    environ: Mapping[str, Any],
    *,
    sender: Optional[str] = None,
    message_id: Optional[str] = None,
) -> None:
    """Log one refused request at WARNING.

    Args:
        status: the status it was refused with.
        reason: why (never sent to the peer).
        environ: the request's environ; the claimed sender, key id and message
            id are read from its headers when not given verified.
        sender: the verified sender, if verification succeeded.
        message_id: the verified message id, if verification succeeded.
    """
    if not log.isEnabledFor(logging.WARNING):
        return  # a flood of refusals costs nothing more when nobody listens
    claimed_kid, claimed_mid = claimed_ids(environ.get("HTTP_X_MSCOMM_SEAL"))
    if sender is None:
        sender = _claimed(environ, "HTTP_X_ENCRYPTION_SERVICE")
        message_id = claimed_mid
    method, path, rid = _claimed(environ, "REQUEST_METHOD"), route(environ), request_id(environ)
    log.warning(
        "refused %d: %s (sender=%r kid=%r id=%r route=%s %s request_id=%s)",
        status,
        reason,
        sender,
        claimed_kid,
        message_id,
        method,
        path,
        rid,
        extra={
            "mscomm.event": "refused",
            "mscomm.status": status,
            "mscomm.reason": reason,
            "mscomm.caller": sender,
            "mscomm.kid": claimed_kid,
            "mscomm.message_id": message_id,
            "mscomm.method": method,
            "mscomm.route": path,
            "mscomm.request_id": rid,
        },
    )


def log_app_failure(what: str, environ: Mapping[str, Any], sender: str, message_id: str) -> None:
    """Log, with the current exception's traceback, a failure answering a verified request."""
    method, path, rid = _claimed(environ, "REQUEST_METHOD"), route(environ), request_id(environ)
    log.exception(
        "%s (sender=%r id=%s route=%s %s request_id=%s)",
        what,
        sender,
        message_id,
        method,
        path,
        rid,
        extra={
            "mscomm.event": "app failed",
            "mscomm.reason": what,
            "mscomm.caller": sender,
            "mscomm.message_id": message_id,
            "mscomm.method": method,
            "mscomm.route": path,
            "mscomm.request_id": rid,
        },
    )


def route(environ: Mapping[str, Any]) -> str:
    """Return the path the request arrived with (mount point included), canonical and bounded.

    The query is left out: it may carry data.
    """
    full = str(environ.get("SCRIPT_NAME", "") or "") + str(environ.get("PATH_INFO", "") or "")
    return target_from_environ({"PATH_INFO": full})[:256]


def request_id(environ: Mapping[str, Any]) -> Optional[str]:
    """Return the caller's ``X-Request-Id`` if it is sane, ``"<invalid>"`` if not."""
    value = environ.get("HTTP_X_REQUEST_ID")
    if value is None:
        return None
    return value if _REQUEST_ID.match(str(value)) else "<invalid>"


def _claimed(environ: Mapping[str, Any], key: str) -> Optional[str]:
    value = environ.get(key)
    if value is None:
        return None
    text = str(value)
    return text[:128] if text.isprintable() else repr(text[:64])
