"""What an idempotency store is: claim a key, then complete or release it.

The middleware runs a handler at most once per (caller, key). Before it runs
the handler it *claims* the key's scope in the store, atomically: of any
number of concurrent requests with one key, in any processes the store is
shared by, exactly one gets :attr:`Outcome.STARTED` and runs the handler.
Once the handler has answered, the claimant *completes* the claim with the
answer (kept for repeats until the retention period ends) or, when the
handler failed, *releases* it so that a repeat may run the handler again.

A claim that is never completed or released (its process was killed) is
given up when its lease runs out, or at once when the store can tell that
the process holding it has died. A repeat then runs the handler, a second
time if the dead process had done the handler's work but not kept its answer:
no store kept apart from the app's own data can tell the two apart.

A store sees only digests (the scope and the request's fingerprint) and the
answers themselves, never the key or the request's body.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
from typing import Optional, Protocol, runtime_checkable

import attrs

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_MAX_ANSWER_SIZE",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_RETENTION",
    "IDEMPOTENCY_DB_ENV",
    "Claim",
    "IdempotencyStore",
    "Outcome",
    "StoredAnswer",
    "fingerprint",
    "log",
    "scope_of",
]

#: Seconds an answer is kept for repeats of its key (a day, as Stripe does).
DEFAULT_RETENTION = 24 * 3600.0
#: Seconds a claim holds its key while its handler runs, unless completed first.
DEFAULT_LEASE = 60.0
#: The largest answer body, in bytes, that is kept.
DEFAULT_MAX_ANSWER_SIZE = 1024 * 1024
#: The most keys a store holds unless told otherwise.
DEFAULT_MAX_ENTRIES = 100_000
#: The environment variable that names the file of the host-wide default store.
IDEMPOTENCY_DB_ENV = "MSCOMM_IDEMPOTENCY_DB"

log = logging.getLogger("mscomm_sync.idempotency")


class Outcome(enum.Enum):
    """What claiming a key found."""

    #: The key is the caller's to run: nothing else holds it.
    STARTED = "started"
    #: Another request with this key is running now.
    RUNNING = "running"
    #: A request with this key was answered; :attr:`Claim.answer` is that answer, if kept.
    DONE = "done"
    #: The key was used for a request with another fingerprint.
    REUSED = "reused"


@attrs.frozen
class StoredAnswer:
    """An answer kept for repeats: what the app answered, before sealing.

    Attributes:
        status: the status line, e.g. ``"201 Created"``.
        headers: the app's headers (without the envelope's).
        body: the body.
        content_type: the body's ``Content-Type``.
    """

    status: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: Optional[str]

    def encode(self) -> bytes:
        """Return the answer as bytes a store can keep: a JSON line, then the body."""
        head = {"status": self.status, "headers": self.headers, "type": self.content_type}
        return json.dumps(head, separators=(",", ":")).encode("utf-8") + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> StoredAnswer:
        """Return the answer :meth:`encode` made ``data`` from.

        Raises:
            ValueError: ``data`` is not such an answer.
        """
        head, _, body = bytes(data).partition(b"\n")
        fields = json.loads(head)
        headers = tuple((str(n), str(v)) for n, v in fields["headers"])
        kind = fields["type"]
        return cls(str(fields["status"]), headers, body, None if kind is None else str(kind))


@attrs.frozen
class Claim:
    """What :meth:`IdempotencyStore.claim` found.

    Attributes:
        outcome: see :class:`Outcome`.
        token: for ``STARTED``, what :meth:`~IdempotencyStore.complete` and
            :meth:`~IdempotencyStore.release` are given.
        answer: for ``DONE``, the kept answer, or ``None`` if it was not kept.
        retry_after: for ``RUNNING``, seconds after which a repeat may be answered.
    """

    outcome: Outcome
    token: str = ""
    answer: Optional[StoredAnswer] = None
    retry_after: float = 0.0


@runtime_checkable
class IdempotencyStore(Protocol):
    """What the middleware needs from an idempotency store.

    Implementations must be safe to call from many threads at once; the
    claim must be atomic across everything that shares the store.
    """

    def claim(self, scope: str, fingerprint: str, *, lease: float) -> Claim:
        """Claim ``scope`` for a request with ``fingerprint``, for ``lease`` seconds.

        Raises:
            IdempotencyStoreError: the store failed.
        """
        ...  # pragma: no cover

    def complete(
        self, scope: str, token: str, answer: Optional[StoredAnswer], *, retention: float
    ) -> None:
        """Record that the claim ``token`` was answered; keep ``answer`` (``None``: not kept).

        Raises:
            IdempotencyStoreError: the store failed.
        """
        ...  # pragma: no cover

    def release(self, scope: str, token: str) -> None:
        """Give up the claim ``token`` without an answer: a repeat may run again.

        Raises:
            IdempotencyStoreError: the store failed.
        """
        ...  # pragma: no cover


def scope_of(service: str, caller: str, key: str) -> str:
    """Return the digest a store keeps for ``key`` sent by ``caller`` to ``service``."""
    data = "\0".join(("mscomm idempotency scope", service, caller, key)).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def fingerprint(method: str, target: str, body: bytes) -> str:
    """Return the digest of what a repeat must have in common with the original."""
    digest = hashlib.sha256(f"{method}\0{target}\0".encode())
    digest.update(body)
    return digest.hexdigest()
