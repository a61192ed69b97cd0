"""What an idempotency key looks like on the wire, and how a service answers about it.

Both sides share these names: the client sends the key and reads the
marker; the middleware reads the key and writes the marker. In protocol v2
both travel among the sealed headers, so no one on the path can read,
add, remove or change them (v1 has no sealed headers, so it carries none).
"""

from __future__ import annotations

import re
from typing import Optional

from ..errors import ConfigurationError

__all__ = [
    "ANSWER_NOT_KEPT",
    "HEADER_IDEMPOTENCY_KEY",
    "HEADER_IDEMPOTENCY_STATE",
    "INVALID_KEY",
    "IN_PROGRESS",
    "KEEP_NONE",
    "KEPT",
    "KEY_REUSED",
    "MAX_KEY_LENGTH",
    "NOT_KEPT",
    "RELEASED",
    "REPLAYED",
    "UNAVAILABLE",
    "valid_key",
    "validate_key",
]

#: The request header that carries the key (the name the IETF draft uses).
HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
#: The answer header in which a service that honours keys says what it did.
HEADER_IDEMPOTENCY_STATE = "X-Mscomm-Idempotency"

#: The handler ran for this request and its answer is kept for repeats.
KEPT = "kept"
#: The handler ran for this request; its answer was too large to keep.
NOT_KEPT = "not-kept"
#: The handler failed (a 5xx or a crash): the key was released, and a repeat runs it again.
RELEASED = "released"
#: The handler ran, but the store failed to keep the answer (logged by the service).
KEEP_NONE = "store-failed"
#: The handler ran for an earlier request with this key: this is its answer again.
REPLAYED = "replayed"
#: 409: a request with this key is running now; try again later.
IN_PROGRESS = "in-progress"
#: 422: this key was used for a different method, target or body.
KEY_REUSED = "key-reused"
#: 410: the handler ran for an earlier request with this key, but its answer was not kept.
ANSWER_NOT_KEPT = "answer-not-kept"
#: 400: the key is not a valid idempotency key.
INVALID_KEY = "invalid-key"
#: 503: the service cannot consult its idempotency store; the handler did not run.
UNAVAILABLE = "unavailable"

#: The longest key, in characters.
MAX_KEY_LENGTH = 255
_KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")  # MAX_KEY_LENGTH


def valid_key(key: object) -> bool:
    """Return whether ``key`` is a valid idempotency key.

    A key is 1 to 255 printable ASCII characters without spaces: a task id,
    an order number, a UUID.
    """
    return isinstance(key, str) and _KEY.match(key) is not None


def validate_key(key: Optional[str]) -> Optional[str]:
    """Return ``key`` if it is ``None`` or valid.

    Raises:
        ConfigurationError: it is not a valid key (the value is not quoted).
    """
    if key is None or valid_key(key):
        return key
    raise ConfigurationError(
        f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces",
        variable="idempotency_key",
        reason="invalid idempotency key",
    )
