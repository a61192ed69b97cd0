"""MemoryIdempotencyStore: the keys of one process, for tests and single-process servers."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Optional

from ..errors import ConfigurationError, IdempotencyStoreError
from .store import DEFAULT_MAX_ENTRIES, Claim, Outcome, StoredAnswer, log

__all__ = ["MemoryIdempotencyStore"]


class _Entry:
    __slots__ = ("answer", "fingerprint", "token", "until")

    def __init__(self, fingerprint: str, token: str, until: float) -> None:
        self.fingerprint = fingerprint
        self.token = token  # "" once answered
        self.until = until  # the lease's end while running, the retention's once answered
        self.answer: Optional[StoredAnswer] = None


class MemoryIdempotencyStore:
    """An idempotency store in this process's memory.

    It is shared by the threads of one process only: behind a server with
    several worker processes (gunicorn), two workers could each run a
    repeat, so use the host-wide :class:`SqliteIdempotencyStore` there.

    When it holds ``max_entries`` keys it forgets the oldest answered ones
    first (logged at WARNING while they were still within their retention);
    when every key held is running it refuses new ones.

    Args:
        max_entries: the most keys held.
        clock: wall-clock time source, for tests.

    Raises:
        ConfigurationError: ``max_entries`` is below 1.
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError(
                "max_entries must be at least 1", variable="max_entries", reason="invalid"
            )
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first

    def claim(self, scope: str, fingerprint: str, *, lease: float) -> Claim:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None and entry.until <= now:
                del self._entries[scope]  # expired, or a lease that ran out
                entry = None
            if entry is not None:
                if entry.fingerprint != fingerprint:
                    return Claim(Outcome.REUSED)
                if entry.token:
                    return Claim(Outcome.RUNNING, retry_after=min(1.0, entry.until - now))
                return Claim(Outcome.DONE, answer=entry.answer)
            if len(self._entries) >= self.max_entries and not self._evict(now):
                raise IdempotencyStoreError(
                    "idempotency store is full of running requests",
                    store=repr(self),
                    reason="full",
                )
            token = os.urandom(8).hex()
            self._entries[scope] = _Entry(fingerprint, token, now + lease)
            return Claim(Outcome.STARTED, token=token)

    def complete(
        self, scope: str, token: str, answer: Optional[StoredAnswer], *, retention: float
    ) -> None:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None or entry.token != token:
                return  # the lease ran out and someone else holds the key now
            entry.token = ""
            entry.answer = answer
            entry.until = self._clock() + retention
            self._entries.move_to_end(scope)

    def release(self, scope: str, token: str) -> None:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None and entry.token == token:
                del self._entries[scope]

    def _evict(self, now: float) -> bool:
        """Forget answered keys, expired ones first; return whether there is room."""
        for scope in [s for s, e in self._entries.items() if e.until <= now]:
            del self._entries[scope]
        for scope, entry in list(self._entries.items()):
            if len(self._entries) < self.max_entries:
                break
            if not entry.token:
                log.warning(
                    "idempotency store is full: forgetting an answer before its retention ended",
                    extra={"mscomm.store": repr(self)},
                )
                del self._entries[scope]
        return len(self._entries) < self.max_entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<MemoryIdempotencyStore max={self.max_entries}>"
