"""The retry budget: retries may add only a fraction of recent traffic.

Modelled on Finagle's ``RetryBudget`` and Linkerd's retry budgets. Every call
deposits ``ratio`` of a token; every retry withdraws one. On top of that, a
reserve of ``min_per_second * window`` tokens is always available, so a quiet
client can still retry. Both deposits and withdrawals expire after
``window`` seconds, so the budget follows recent traffic only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from .policies import BudgetPolicy

__all__ = ["RetryBudget"]

_BUCKETS = 10


class RetryBudget:
    """A thread-safe sliding-window retry budget for one target.

    Time is cut into ten buckets per window; a bucket older than the window
    is dropped whole, so the cost per call is constant.

    Args:
        target: the target service, for the repr.
        policy: the ratio, window and floor.
        clock: a monotonic clock in seconds.
    """

    def __init__(
        self,
        target: str,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.policy = policy
        self._clock = clock
        self._width = policy.window / _BUCKETS
        # Each bucket: [index, calls, retries].
        self._buckets: deque[list[int]] = deque()
        self._lock = threading.Lock()

    def _current(self) -> list[int]:
        index = int(self._clock() // self._width)
        oldest = index - _BUCKETS + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append([index, 0, 0])
        return self._buckets[-1]

    def record_call(self) -> None:
        """Count one call (a deposit of ``ratio`` retries)."""
        with self._lock:
            self._current()[1] += 1

    def try_spend(self) -> bool:
        """Withdraw one retry if the budget allows it.

        Returns:
            ``True`` if the retry may go ahead (it has been counted),
            ``False`` if the budget is spent.
        """
        with self._lock:
            bucket = self._current()
            calls = sum(b[1] for b in self._buckets)
            retries = sum(b[2] for b in self._buckets)
            allowed = self.policy.ratio * calls + self.policy.min_per_second * self.policy.window
            if retries + 1 > allowed:
                return False
            bucket[2] += 1
            return True

    def available(self) -> float:
        """Return how many retries could be spent now (may be fractional)."""
        with self._lock:
            self._current()
            calls = sum(b[1] for b in self._buckets)
            retries = sum(b[2] for b in self._buckets)
        allowed = self.policy.ratio * calls + self.policy.min_per_second * self.policy.window
        return max(allowed - retries, 0.0)

    def __repr__(self) -> str:
        return f"<RetryBudget target={self.target!r} available={self.available():.1f}>"
