"""The time one call must finish by."""

from __future__ import annotations

import time
from typing import Callable

import attrs

from ..errors import DeadlineAfterSendingError, DeadlineBeforeSendingError, DeadlineExceededError

__all__ = ["Deadline"]


@attrs.frozen(kw_only=True)
class Deadline:
    """The time one call must finish by.

    Attributes:
        service: the target service (for the error).
        at: the time on ``clock`` the call must finish by.
        seconds: the call's whole deadline in seconds (for the error).
        clock: the monotonic clock ``at`` is read on.
    """

    service: str
    at: float
    seconds: float
    clock: Callable[[], float] = time.monotonic

    def remaining(self) -> float:
        """Return the seconds left (negative once the deadline has passed)."""
        return self.at - self.clock()

    def exceeded(self, *, sent: bool) -> DeadlineExceededError:
        """Return the error that reports this deadline as passed.

        Args:
            sent: whether an attempt of the call may have reached the service.
        """
        kind = DeadlineAfterSendingError if sent else DeadlineBeforeSendingError
        return kind(self.service, self.seconds)
