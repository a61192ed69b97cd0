"""The sealed envelope protocol: the layer every other one builds on.

It knows nothing of HTTP clients or WSGI servers. Its parts:

* :mod:`.envelope`: :class:`Envelope`, which seals and opens one message,
  choosing the version and keys; :mod:`.sealing` and :mod:`.opening` do the
  work, :mod:`.rejection` refuses (one opaque error, the reason to the log);
* :mod:`.v1` and :mod:`.v2`: each version's cryptography; :mod:`.fields`, v2's
  sealed header section;
* :mod:`.limits`: the defaults and sizes, one constant per setting;
* :mod:`.messages`: the values it works with (:class:`Sealed`,
  :class:`Opened`, and the ``Binding`` of a message to its metadata);
* :mod:`.headers`: header names and the seal header's one spelling;
* :mod:`.crypto`: per-message keys and the associated data;
* :mod:`.target`: the canonical request target bound into a seal.

The wire format is specified in ``docs/protocol.md``.
"""

from .crypto import VERSION, associated_data, derive_message_key
from .envelope import Envelope
from .headers import (
    COMMON_METHODS,
    ENVELOPE_HEADERS,
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SEALED_BODY,
    HEADER_SERVICE,
    NOT_EXECUTED_CONTENT_TYPE,
    SEALED_CONTENT_TYPE,
    claimed_ids,
)
from .limits import DEFAULT_MAX_BODY_SIZE, DEFAULT_WINDOW
from .messages import REQUEST, RESPONSE, Opened, Sealed
from .target import canonical_target, target_from_endpoint, target_from_environ, target_from_url

__all__ = [
    "COMMON_METHODS",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_WINDOW",
    "ENVELOPE_HEADERS",
    "HEADER_ENCRYPTED",
    "HEADER_SEAL",
    "HEADER_SEALED_BODY",
    "HEADER_SERVICE",
    "NOT_EXECUTED_CONTENT_TYPE",
    "REQUEST",
    "RESPONSE",
    "SEALED_CONTENT_TYPE",
    "VERSION",
    "Envelope",
    "Opened",
    "Sealed",
    "associated_data",
    "canonical_target",
    "claimed_ids",
    "derive_message_key",
    "target_from_endpoint",
    "target_from_environ",
    "target_from_url",
]
