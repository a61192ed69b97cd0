"""A bounded wait for an exclusive ``flock``, for the file registry's writers.

A blocking ``flock`` waits for ever: one writer stopped while it holds the lock
(SIGSTOP, a debugger, a frozen container) would freeze every write on the host.
So the lock is tried without blocking and retried with growing pauses until a
deadline, and the caller turns a miss into an error that names the file.
"""

from __future__ import annotations

import fcntl
import math
import time
from collections.abc import Callable
from typing import Optional

from ..errors import ConfigurationError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "acquire", "checked_timeout"]

#: Seconds a writer waits for another process's registry lock before failing.
DEFAULT_LOCK_TIMEOUT = 5.0

# Another writer holds the lock for one small write (about a millisecond, more
# with a slow fsync), so the first retries come quickly; then the pauses grow
# to this, so that a long wait does not spin.
_MAX_PAUSE = 0.01
_FIRST_PAUSE = 0.0001


def checked_timeout(value: Optional[float]) -> float:
    """Return the lock timeout ``value`` stands for (``None``: the default).

    Raises:
        ConfigurationError: it is not a finite number of seconds ``>= 0``.
    """
    timeout = DEFAULT_LOCK_TIMEOUT if value is None else value
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (timeout >= 0 and math.isfinite(timeout))
    ):
        raise ConfigurationError(
            f"lock_timeout must be a finite number of seconds >= 0, got {value!r}",
            variable="lock_timeout",
            reason="invalid lock timeout",
        )
    return float(timeout)


def acquire(
    fd: int,
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Take an exclusive ``flock`` on ``fd``, waiting at most ``timeout`` seconds.

    Args:
        fd: an open descriptor of the lock file.
        timeout: the longest wait in seconds; ``0`` tries once.
        clock: a monotonic clock in seconds.
        sleep: pauses between tries.

    Returns:
        True once the lock is held; False if it was still held elsewhere
        when the timeout ran out.
    """
    if _try(fd):
        return True
    deadline = clock() + timeout
    pause = _FIRST_PAUSE
    slept = 0.0
    # Bounded twice: by the clock, and by the pauses asked for, which a sleep
    # never undercuts; so a clock that stands still cannot make this spin.
    while slept < timeout:
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        step = min(pause, remaining, timeout - slept)
        sleep(step)
        slept += step
        if _try(fd):
            return True
        pause = min(pause * 2, _MAX_PAUSE)
    return False


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
