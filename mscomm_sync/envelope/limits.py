"""The envelope's defaults and sizes: one constant per setting, and only here.

The client (what an answer may add to its plaintext) and the middleware (what a
request may) read their allowances from :func:`sealing_overhead`, so the two
sides and the envelope cannot disagree about a byte.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_VERSIONS",
    "DEFAULT_WINDOW",
    "JOIN_BELOW",
    "MAX_CONTENT_TYPE",
    "MAX_SEALED_HEADERS",
    "SEALING_OVERHEAD",
    "TAG_BYTES",
    "sealing_overhead",
]

#: How far, in seconds, a message's timestamp may be from the receiver's clock.
DEFAULT_WINDOW = 60.0
#: The largest plaintext body a receiver accepts unless told otherwise.
DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
#: The protocol versions an envelope speaks unless told otherwise.
DEFAULT_VERSIONS = frozenset({"1", "2"})
#: One AES-GCM tag: all that a v1 sealed body adds to its plaintext.
TAG_BYTES = 16
#: The most bytes v2's sealed header section (content type and headers) may take.
MAX_SEALED_HEADERS = 64 * 1024
#: How much longer than its plaintext a v2 sealed body may be: two tags and the section.
SEALING_OVERHEAD = TAG_BYTES * 2 + MAX_SEALED_HEADERS
#: A sealed body shorter than this is sent as one piece: joining v2's two chunks
#: costs less than the second write and the second read it saves each side.
JOIN_BELOW = 64 * 1024
#: The longest plaintext ``Content-Type`` sealed, in bytes.
MAX_CONTENT_TYPE = 1024


def sealing_overhead(version: str) -> int:
    """How much longer than its plaintext a body sealed with ``version`` may be."""
    return SEALING_OVERHEAD if version == "2" else TAG_BYTES
