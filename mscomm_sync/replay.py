"""Replay stores: remember message ids so a captured message opens only once.

Trust model: an attacker on the network can capture a sealed request and send
it again, as many times and to as many workers as they like. The envelope's
timestamp window limits *how long* a capture is useful; the replay store makes
it useful *zero* times more. Its one operation, :meth:`ReplayStore.add`, must be
atomic insert-if-absent: of many concurrent deliveries of one message id,
exactly one may see ``True``.

A store only ever holds opaque message ids and expiry times, never keys or
plaintext.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable, Protocol, runtime_checkable

__all__ = ["DEFAULT_MAX_ENTRIES", "MemoryReplayStore", "ReplayStore"]

DEFAULT_MAX_ENTRIES = 1_000_000


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


class MemoryReplayStore:
    """A replay store for one process, bounded in memory.

    It protects a single-process app. Under gunicorn or any server with more
    than one worker process, use a store shared by the workers instead, or a
    request replayed to another worker will be accepted there.

    When the store holds ``max_entries`` unexpired ids it refuses new ones
    (fails closed) rather than forgetting ids that could still be replayed.

    Args:
        max_entries: the most ids held at once.
        clock: wall-clock time source, injectable for tests.
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._evict(now)
            current = self._expiry.get(key)
            if current is not None and current > now:
                return False
            if len(self._expiry) >= self.max_entries:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def _evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._expiry)

    def __repr__(self) -> str:
        return f"<MemoryReplayStore entries={len(self._expiry)} max={self.max_entries}>"
