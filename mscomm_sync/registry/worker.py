"""An owned background thread that runs one step at a jittered interval.

Registries use it for health sweeps, etcd lease keep-alives and etcd cache
refreshes. Threads do not survive ``fork()``, and a lock another thread held at
the fork stays held forever in the child. So a fork hook, installed on first
use, resets every registered object in the child (:func:`reset_after_fork`):
workers forget their dead thread and are restarted lazily by their owner on
next use (see :func:`fork_generation`), and owners renew their locks.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Optional

from ..forking import fork_generation, reset_after_fork

__all__ = ["PeriodicWorker", "fork_generation", "reset_after_fork"]

log = logging.getLogger("mscomm_sync.registry")


class PeriodicWorker:
    """Call ``step`` every ``interval`` seconds (with jitter) on an owned thread.

    Args:
        step: the work to do; exceptions are logged and do not stop the loop.
        name: the thread name.
        interval: seconds between the end of one step and the start of the next.
        jitter: the fraction (``0 <= jitter < 1``) by which each delay varies,
            so that many processes do not act in lock-step.
        run_immediately: run the first step as soon as the thread starts.
        restart_after_fork: whether a forked child restarts the worker.
        clock: a monotonic clock in seconds.
        random: returns a float in ``[0, 1)``; drives the jitter.
    """

    def __init__(
        self,
        step: Callable[[], object],
        *,
        name: str,
        interval: float,
        jitter: float = 0.0,
        run_immediately: bool = True,
        restart_after_fork: bool = True,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self._step = step
        self.name = name
        self.interval = interval
        self.jitter = jitter
        self._run_immediately = run_immediately
        self._restart_after_fork = restart_after_fork
        self._clock = clock
        self._random = random
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._next_due = clock()
        self._restart_pending = False

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def next_delay(self) -> float:
        """Return the next jittered delay in seconds."""
        return self.interval * (1.0 + self.jitter * (2.0 * self._random() - 1.0))

    def start(self) -> None:
        """Start the thread; does nothing if it is already running."""
        with self._lock:
            if self.running:
                return
            reset_after_fork(self)
            self._restart_pending = False
            self._stop = threading.Event()
            now = self._clock()
            self._next_due = now if self._run_immediately else now + self.next_delay()
            thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name)
            thread.daemon = True
            self._thread = thread
            thread.start()

    def stop(self, timeout: Optional[float] = 5.0) -> bool:
        """Ask the thread to stop and wait up to ``timeout`` seconds.

        Args:
            timeout: seconds to wait for the thread; ``None`` waits forever.

        Returns:
            True if the thread has ended (or never ran).
        """
        with self._lock:
            thread, self._thread = self._thread, None
            self._restart_pending = False
            self._stop.set()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def ensure_running(self) -> None:
        """Restart the thread if it was running before this process forked."""
        if self._restart_pending:
            self.start()

    def run_due(self) -> bool:
        """Run the step if its time has come, then schedule the next one.

        Returns:
            True if the step ran.
        """
        if self._clock() < self._next_due:
            return False
        try:
            self._step()
        except Exception:
            log.exception(
                "%s: step failed", self.name,
                extra={"mscomm.event": "worker step failed", "mscomm.worker": self.name},
            )  # fmt: skip
        self._next_due = self._clock() + self.next_delay()
        return True

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_due()
            remaining = self._next_due - self._clock()
            # Bounded so that a clock jump cannot park the thread for long.
            stop.wait(min(max(remaining, 0.0), 2.0 * self.interval))

    def _reset_after_fork(self) -> None:
        was_running = self._thread is not None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._restart_pending = was_running and self._restart_after_fork

    def __enter__(self) -> PeriodicWorker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PeriodicWorker name={self.name!r} interval={self.interval:g} {state}>"
