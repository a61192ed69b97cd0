"""Tests for mscomm_sync.client.deadline: a call's deadline and one attempt's share of it."""

from __future__ import annotations

import pytest

from mscomm_sync.client.deadline import AttemptDeadline, Deadline
from mscomm_sync.client.failures import AttemptFailed
from mscomm_sync.errors import (
    DeadlineAfterSendingError,
    DeadlineBeforeSendingError,
    DeadlineExceededError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def deadline(clock: Clock, seconds: float = 3.0) -> Deadline:
    return Deadline(service="billing", at=clock.now + seconds, seconds=seconds, clock=clock)


def test_remaining_counts_down_and_goes_negative() -> None:
    clock = Clock()
    call = deadline(clock)
    assert call.remaining() == 3.0
    clock.now += 4
    assert call.remaining() == -1.0


@pytest.mark.parametrize(
    ("sent", "kind"), [(False, DeadlineBeforeSendingError), (True, DeadlineAfterSendingError)]
)
def test_the_error_says_whether_anything_was_sent(sent: bool, kind: type) -> None:
    error = deadline(Clock()).exceeded(sent=sent)
    assert type(error) is kind and isinstance(error, DeadlineExceededError)
    assert (error.service, error.timeout) == ("billing", 3.0)


def test_a_deadline_is_frozen() -> None:
    with pytest.raises(AttributeError, match="immutable"):
        deadline(Clock()).at = 0  # type: ignore[misc]


def test_an_attempts_share_starts_at_its_first_read() -> None:
    clock = Clock()
    share = AttemptDeadline(deadline(clock), 1.0)
    clock.now += 0.5  # sending took a while: the share has not started
    assert share.remaining() == 1.0
    clock.now += 0.25
    assert share.remaining() == 0.75
    assert (share.service, share.seconds) == ("billing", 3.0)


def test_the_share_never_outlasts_the_call() -> None:
    clock = Clock()
    share = AttemptDeadline(deadline(clock, seconds=0.5), 1.0)
    assert share.remaining() == 0.5


def test_a_spent_share_is_a_retryable_read_timeout() -> None:
    clock = Clock()
    share = AttemptDeadline(deadline(clock), 1.0)
    share.remaining()
    clock.now += 1.5
    failed = share.exceeded(sent=True)
    assert isinstance(failed, AttemptFailed)
    assert (failed.reason, failed.connect_phase, failed.not_run) == ("ReadTimeout", False, False)


def test_a_spent_call_is_the_calls_own_error() -> None:
    clock = Clock()
    share = AttemptDeadline(deadline(clock), 1.0)
    clock.now += 3.5
    assert isinstance(share.exceeded(sent=True), DeadlineAfterSendingError)
