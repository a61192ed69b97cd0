"""MemoryReplayStore: a replay store for one process, bounded in memory."""

from __future__ import annotations

import threading
import time
from heapq import heappop, heappush
from typing import Callable

from ..errors import ConfigurationError
from .store import DEFAULT_MAX_ENTRIES

__all__ = ["MemoryReplayStore"]


class MemoryReplayStore:
    """A replay store for one process, bounded in memory.

    It protects a single-process app. Under gunicorn or any server with more
    than one worker process, use a store shared by the workers instead, or a
    request replayed to another worker will be accepted there.

    When the store holds ``max_entries`` unexpired ids it refuses new ones
    (fails closed) rather than forgetting ids that could still be replayed.
    A new store remembers nothing, so it vouches only for messages sealed
    from the second it was made (:attr:`not_before`): a restarted process
    refuses a message sealed in an earlier second, rather than accept it
    twice. Timestamps are whole seconds, so a message sealed and delivered in
    the very second the process restarted in is not told apart; the host-wide
    stores (the default) vouch from the next whole second instead, at the cost
    of one retry for what arrives in their first second.

    Args:
        max_entries: the most ids held at once.
        clock: wall-clock time source, injectable for tests.
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
        #: The whole second (Unix time) this store was made in: it vouches from there.
        self.not_before = float(int(clock()))
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            heap = self._heap
            if heap and heap[0][0] <= now:
                self._evict(now)
            # Only unexpired ids remain: any expired one was just evicted.
            expiry = self._expiry
            if key in expiry or len(expiry) >= self.max_entries:
                return False
            expiry[key] = expires_at
            heappush(heap, (expires_at, key))
            return True

    def _evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._expiry)

    def __repr__(self) -> str:
        return f"<MemoryReplayStore entries={len(self._expiry)} max={self.max_entries}>"
