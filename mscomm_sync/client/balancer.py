"""Instance choice: power of two choices on in-flight requests.

For each attempt the balancer picks two distinct candidates at random and
sends to the one with fewer requests in flight from this client (ties go to
the first pick). This is the "P2C least-loaded" policy of Finagle and Linkerd:
it avoids the herd behaviour of always picking the least-loaded instance and
reacts to slow instances, which accumulate requests in flight.

Candidates are, in order of preference: healthy instances this call has not
tried yet and that have not recently refused a connection; then healthy ones
not yet tried; then any not yet tried; then any. So failover goes to a
different instance whenever one exists, and when every instance is marked
unhealthy they are tried anyway (the caller logs a warning).
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import Collection, Sequence
from typing import Callable

from ..registry.base import Instance

__all__ = ["DEFAULT_EJECTION", "PowerOfTwoBalancer"]

#: Seconds an instance that refused a connection is avoided while others remain.
DEFAULT_EJECTION = 5.0


class PowerOfTwoBalancer:
    """Choose instances by power of two choices; count requests in flight.

    Thread-safe. One balancer serves every target of a client; instances are
    keyed by URL.

    Args:
        random: floats in ``[0, 1)``.
        clock: a monotonic clock in seconds.
        ejection: seconds to avoid an instance after a connect-phase failure.
    """

    def __init__(
        self,
        *,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
        ejection: float = DEFAULT_EJECTION,
    ) -> None:
        if ejection < 0:
            raise ValueError("ejection must be >= 0")
        self._random = random
        self._clock = clock
        self.ejection = ejection
        self._in_flight: dict[str, int] = {}
        self._ejected: dict[str, float] = {}
        self._lock = threading.Lock()

    def choose(self, instances: Sequence[Instance], tried: Collection[str] = ()) -> Instance:
        """Pick the instance for the next attempt.

        Args:
            instances: the target's instances (at least one).
            tried: URLs this call has already tried.

        Returns:
            The chosen instance.

        Raises:
            ValueError: ``instances`` is empty.
        """
        if not instances:
            raise ValueError("no instances to choose from")
        now = self._clock()
        with self._lock:
            ejected = dict(self._ejected)
        # The first non-empty of: healthy, untried and not ejected; healthy and
        # untried; untried; any. One pass builds the first three.
        preferred: list[Instance] = []
        fresh: list[Instance] = []
        untried: list[Instance] = []
        for instance in instances:
            url = instance.url
            if url in tried:
                continue
            untried.append(instance)
            if instance.healthy:
                fresh.append(instance)
                if ejected.get(url, now) <= now:
                    preferred.append(instance)
        return self._pick(preferred or fresh or untried or list(instances))

    def _pick(self, pool: Sequence[Instance]) -> Instance:
        if len(pool) == 1:
            return pool[0]
        n = len(pool)
        first = min(int(self._random() * n), n - 1)
        second = min(int(self._random() * (n - 1)), n - 2)
        if second >= first:
            second += 1
        a, b = pool[first], pool[second]
        with self._lock:
            load_a = self._in_flight.get(a.url, 0)
            load_b = self._in_flight.get(b.url, 0)
        return b if load_b < load_a else a

    def start(self, url: str) -> None:
        """Count a request to ``url`` as in flight."""
        with self._lock:
            self._in_flight[url] = self._in_flight.get(url, 0) + 1

    def finish(self, url: str) -> None:
        """Count a request to ``url`` as done."""
        with self._lock:
            left = self._in_flight.get(url, 0) - 1
            if left > 0:
                self._in_flight[url] = left
            else:
                self._in_flight.pop(url, None)

    def eject(self, url: str) -> None:
        """Avoid ``url`` for a while: it refused or timed out a connection."""
        now = self._clock()
        with self._lock:
            if len(self._ejected) > 64:
                self._ejected = {u: t for u, t in self._ejected.items() if t > now}
            self._ejected[url] = now + self.ejection

    def readmit(self, url: str) -> None:
        """Stop avoiding ``url``: it answered."""
        with self._lock:
            self._ejected.pop(url, None)

    def in_flight(self, url: str) -> int:
        """Return how many requests to ``url`` are in flight."""
        with self._lock:
            return self._in_flight.get(url, 0)

    def __repr__(self) -> str:
        with self._lock:
            busy = sum(self._in_flight.values())
        return f"<PowerOfTwoBalancer in_flight={busy}>"
