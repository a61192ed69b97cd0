"""How the envelope refuses a message: one opaque error out, the reason to this side's log.

Whoever sent a message that does not open learns nothing about why (every
refusal is the same :class:`~mscomm_sync.errors.IntegrityError` message); the
receiver's operators read the reason in the ``mscomm_sync.envelope`` log, at
INFO, with structured fields for a JSON formatter.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..errors import IntegrityError
from .headers import SealFields
from .messages import REQUEST, Binding

__all__ = ["reject"]

log = logging.getLogger("mscomm_sync.envelope")

#: A claimed sender longer than this is not repeated in a log line or an error.
_MAX_LOGGED_NAME = 128


def reject(
    reason: str,
    binding: Optional[Binding],
    fields: Optional[SealFields],
    *,
    direction: Optional[str] = None,
    sender: Optional[str] = None,
) -> IntegrityError:
    """Log why a message was rejected (INFO, this side only) and return the opaque error."""
    if binding is not None:
        direction, sender = binding.direction, binding.sender
    safe_sender = sender if sender is not None and len(sender) <= _MAX_LOGGED_NAME else None
    kid, mid = (fields.kid, fields.message_id) if fields is not None else (None, None)
    log.info(
        "rejected sealed %s: %s (sender=%r kid=%r id=%r)",
        direction or REQUEST,
        reason,
        safe_sender,
        kid,
        mid,
        extra={
            "mscomm.event": "seal rejected",
            "mscomm.direction": direction or REQUEST,
            "mscomm.reason": reason,
            "mscomm.caller": safe_sender,
            "mscomm.kid": kid,
            "mscomm.message_id": mid,
        },
    )
    return IntegrityError(service=safe_sender, reason=reason)
