"""The time one call must finish by, and the share of it one attempt may take."""

from __future__ import annotations

import time
from typing import Callable, Optional, Union

import attrs

from .._fast import Record
from ..errors import (
    DeadlineAfterSendingError,
    DeadlineBeforeSendingError,
    DeadlineExceededError,
    MscommError,
)
from .failures import AttemptFailed

__all__ = ["AttemptDeadline", "Bound", "Deadline"]


class Deadline(Record):
    """The time one call must finish by.

    Immutable, and a :class:`~mscomm_sync._fast.Record`: one is made for
    every call.

    Attributes:
        service: the target service (for the error).
        at: the time on ``clock`` the call must finish by.
        seconds: the call's whole deadline in seconds (for the error).
        clock: the monotonic clock ``at`` is read on.
    """

    __slots__ = ("service", "at", "seconds", "clock")  # noqa: RUF023 - the fill order

    service: str
    at: float
    seconds: float
    clock: Callable[[], float]

    def __new__(
        cls, *, service: str, at: float, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> Deadline:
        return cls._make(service, at, seconds, clock)

    def __repr__(self) -> str:
        return f"<Deadline service={self.service!r} seconds={self.seconds}>"

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


@attrs.define
class AttemptDeadline:
    """One attempt's share of its call's deadline, counted from the first read of its answer.

    The read timeout bounds each wait on the socket; this bounds the whole
    answer, status line to last byte, so an instance that trickles its answer
    (a byte just inside every read timeout) costs an attempt its share and
    no more, and the call fails over as from a hung one. When the share runs
    out first, :meth:`exceeded` is a retryable :class:`AttemptFailed`; when
    the call's deadline does, the call's own error.

    Attributes:
        call: the call's deadline.
        share: the seconds this attempt's answer may take.
    """

    call: Deadline
    share: float
    _ends: Optional[float] = attrs.field(default=None, init=False)

    @property
    def service(self) -> str:
        return self.call.service

    @property
    def seconds(self) -> float:
        return self.call.seconds

    def remaining(self) -> float:
        """Return the seconds left of the share (it starts on the first call) or the call."""
        now = self.call.clock()
        if self._ends is None:
            self._ends = now + self.share
        return min(self.call.at, self._ends) - now

    def exceeded(self, *, sent: bool) -> MscommError:
        """Return the call's error if its deadline passed, else this attempt's failure."""
        if self.call.remaining() <= 0:
            return self.call.exceeded(sent=sent)
        cause = TimeoutError(f"the answer took longer than the attempt's {self.share:.3f} s")
        return AttemptFailed("ReadTimeout", cause, connect_phase=False)


#: What the transport reads an answer within: the call's deadline, or an attempt's share.
Bound = Union[Deadline, AttemptDeadline]
