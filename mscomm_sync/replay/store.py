"""What a replay store is: one atomic operation, ``add``.

Trust model: an attacker on the network can capture a sealed request and send
it again, as many times and to as many workers as they like. The envelope's
timestamp window limits *how long* a capture is useful; the replay store makes
it useful *zero* times more. Its one operation, :meth:`ReplayStore.add`, must be
atomic insert-if-absent: of many concurrent deliveries of one message id,
exactly one may see ``True``.

A store only ever holds opaque message ids and expiry times, never keys or
plaintext.

A store that has just been made (a reboot cleared tmpfs, a container
restarted) remembers nothing of the messages delivered before it. Each store
of this package therefore says from when it can vouch for a message: its
``not_before``: for the host-wide stores the first whole second (Unix time)
after it was made, since timestamps are whole seconds and one of the second
it was made in may be of a message sealed just before (for the one-process
memory store, that second itself). The
envelope refuses a message sealed in an earlier second
(:class:`~mscomm_sync.errors.ReplayGapError`) rather than risk accepting it
a second time; the middleware answers such a refusal so that the caller
seals the request again (see ``docs/middleware.md``). A store of your own
may have a ``not_before`` attribute too; one without is taken to remember
everything it was ever given.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_MAX_ENTRIES", "REPLAY_DB_ENV", "ReplayStore", "log"]

#: The most unexpired ids a store holds unless told otherwise.
DEFAULT_MAX_ENTRIES = 1_000_000
#: The environment variable that names the file of the host-wide default replay store.
REPLAY_DB_ENV = "MSCOMM_REPLAY_DB"

log = logging.getLogger("mscomm_sync.replay")


@runtime_checkable
class ReplayStore(Protocol):
    """What the envelope needs from a replay store.

    Implementations must be safe to call from many threads at once.
    """

    def add(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until the wall-clock time ``expires_at``.

        Returns:
            ``True`` if the key was not present (the message is fresh),
            ``False`` if it was already recorded and has not expired, or if
            the store cannot take more entries (it fails closed).
        """
        ...  # pragma: no cover
