"""A per-target circuit breaker built on the ``circuitbreaker`` package.

The package supplies the state names, the failure predicate and the
``call()``/context-manager surface. It leaves gaps that this subclass closes:

* its state is unlocked; here every read-modify-write of the state holds a
  lock (the lock guards the state only, never the guarded call);
* ``call()`` and ``with breaker:`` ignore an open circuit (only its
  decorator checks); here entering raises :class:`CircuitOpenError`;
* half-open lets every concurrent caller through; here exactly one probe;
* ``failure_threshold=0`` and ``recovery_timeout=0`` silently become its
  defaults; here they are honoured (0 disables / probes at once);
* its open period is fixed and read from ``time.monotonic``; here it is
  jittered and the clock and randomness are injected.

A *failure* is what the caller reports: the client reports one per call
after failover, so one dead instance among live ones does not open it.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from types import TracebackType
from typing import Callable, Literal, Optional

import circuitbreaker

from ..errors import CircuitOpenError
from .policies import BreakerPolicy

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "Listener"]

CLOSED: str = circuitbreaker.STATE_CLOSED
OPEN: str = circuitbreaker.STATE_OPEN
HALF_OPEN: str = circuitbreaker.STATE_HALF_OPEN

#: Called as ``listener(breaker, old_state, new_state)`` after a transition.
Listener = Callable[["CircuitBreaker", str, str], None]

log = logging.getLogger("mscomm_sync.client")


class CircuitBreaker(circuitbreaker.CircuitBreaker):  # type: ignore[misc]
    """One target service's breaker, owned by one client.

    Use :meth:`acquire` before a call and exactly one of
    :meth:`record_success`, :meth:`record_failure` or :meth:`release` after
    it, passing back the value :meth:`acquire` returned. ``with breaker:``
    and :meth:`call` do the same, counting exceptions that ``is_failure``
    accepts as failures.

    Args:
        target: the target service's name.
        policy: threshold, open period and jitter.
        clock: a monotonic clock in seconds.
        random: floats in ``[0, 1)``, for the open-period jitter.
        listener: called after every state transition.
        is_failure: ``(type, exc) -> bool`` for the context-manager form;
            by default every exception is a failure.
    """

    def __init__(
        self,
        target: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        listener: Optional[Listener] = None,
        is_failure: Optional[Callable[[type[BaseException], BaseException], bool]] = None,
    ) -> None:
        super().__init__(
            expected_exception=is_failure if is_failure is not None else Exception, name=target
        )
        # The base class turns 0 into its defaults with `or`; set them as given.
        self._failure_threshold = policy.failure_threshold
        self._recovery_timeout = policy.recovery_timeout
        self.policy = policy
        self._clock = clock
        self._random = random
        self._listener = listener
        self._lock = threading.Lock()
        self._local = threading.local()
        self._state: str = CLOSED
        self._last_failure: Optional[BaseException] = None
        self._opened = clock()
        self._open_for = 0.0

    # -- state -------------------------------------------------------------

    @property
    def target(self) -> str:
        """The target service."""
        return str(self._name)

    @property
    def state(self) -> str:
        """``'closed'``, ``'open'`` or ``'half_open'`` (a probe may go or is out)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> str:
        if self._state == OPEN and self._remaining_locked() <= 0:
            return HALF_OPEN
        return str(self._state)

    def _remaining_locked(self) -> float:
        return self._opened + self._open_for - self._clock()

    @property
    def open_remaining(self) -> float:
        """Seconds until the next probe may go; 0 when closed or half-open."""
        with self._lock:
            return max(self._remaining_locked(), 0.0) if self._state == OPEN else 0.0

    # -- protocol ----------------------------------------------------------

    def acquire(self) -> bool:
        """Ask to make a call.

        Returns:
            ``True`` if this call is the single half-open probe, else ``False``.

        Raises:
            CircuitOpenError: the circuit is open, or a probe is already out.
        """
        if self._failure_threshold == 0:
            return False
        with self._lock:
            if self._state == CLOSED:
                return False
            remaining = self._remaining_locked()
            if self._state == OPEN and remaining <= 0:
                self._state = HALF_OPEN
                transition: Optional[tuple[str, str]] = (OPEN, HALF_OPEN)
            else:
                transition = None
        if transition is None:
            raise CircuitOpenError(self.target, max(remaining, 0.0))
        self._notify(*transition)
        return True

    def record_success(self, probe: bool) -> None:
        """Report a call that got an answer; closes a half-open circuit."""
        with self._lock:
            self._failure_count = 0
            self._last_failure = None
            old = self._state
            if old == HALF_OPEN and probe:
                self._state = CLOSED
        if old == HALF_OPEN and probe:
            self._notify(HALF_OPEN, CLOSED)

    def record_failure(self, probe: bool, error: Optional[BaseException] = None) -> None:
        """Report a failed call (after failover); may open the circuit."""
        with self._lock:
            self._failure_count += 1
            self._last_failure = error
            old = self._state
            opens = self._failure_threshold > 0 and (
                (old == HALF_OPEN and probe)
                or (old == CLOSED and self._failure_count >= self._failure_threshold)
            )
            if opens:
                self._open_locked()
        if opens:
            self._notify(old, OPEN)

    def release(self, probe: bool) -> None:
        """Report a call that says nothing about the target's health.

        A probe released this way returns the circuit to open with no wait,
        so the next caller probes instead.
        """
        if not probe:
            return
        with self._lock:
            if self._state == HALF_OPEN:
                self._state = OPEN
                self._opened = self._clock()
                self._open_for = 0.0

    def reset(self) -> None:
        """Close the circuit and forget failures."""
        with self._lock:
            old = self._state
            self._state = CLOSED
            self._failure_count = 0
            self._last_failure = None
        if old != CLOSED:
            self._notify(old, CLOSED)

    def _open_locked(self) -> None:
        jitter = self.policy.jitter * (2.0 * self._random() - 1.0)
        self._state = OPEN
        self._opened = self._clock()
        self._open_for = self._recovery_timeout * (1.0 + jitter)

    def _notify(self, old: str, new: str) -> None:
        log.warning(
            "circuit %s -> %s (service=%s failures=%d)", old, new, self.target,
            self._failure_count,
            extra={"mscomm.event": "circuit", "mscomm.target": self.target,
                   "mscomm.breaker.from": old, "mscomm.breaker.to": new,
                   "mscomm.failures": self._failure_count},
        )  # fmt: skip
        if self._listener is not None:
            try:
                self._listener(self, old, new)
            except Exception:
                log.exception(
                    "breaker listener failed (service=%s)", self.target,
                    extra={"mscomm.event": "listener failed", "mscomm.target": self.target},
                )  # fmt: skip

    # -- the circuitbreaker package's surface --------------------------------

    def __enter__(self) -> None:
        self._local.probe = self.acquire()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        _traceback: Optional[TracebackType],
    ) -> Literal[False]:
        probe = bool(getattr(self._local, "probe", False))
        if exc_type is None or exc_value is None:
            self.record_success(probe)
        elif isinstance(exc_value, Exception) and self.is_failure(exc_type, exc_value):
            self.record_failure(probe, exc_value)
        else:
            self.release(probe)
        return False

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker target={self.target!r} state={self.state!r} "
            f"failures={self._failure_count}>"
        )
