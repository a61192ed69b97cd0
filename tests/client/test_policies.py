"""Policies: frozen, validated, 0 is a real setting, backoff never zero by default."""

from __future__ import annotations

import attrs
import pytest

from mscomm_sync.client.policies import (
    BreakerPolicy,
    BudgetPolicy,
    CallPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from mscomm_sync.errors import ConfigurationError


def test_zero_is_kept() -> None:
    """Zero thresholds, timeouts and retries are kept, not replaced by defaults."""
    assert BreakerPolicy(failure_threshold=0, recovery_timeout=0).recovery_timeout == 0
    assert RetryPolicy(retries=0).retries == 0
    assert BudgetPolicy(ratio=0, min_per_second=0).ratio == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: RetryPolicy(retries=-1),
        lambda: RetryPolicy(jitter=1.5),
        lambda: TimeoutPolicy(deadline=0),
        lambda: TimeoutPolicy(connect=float("inf")),
        lambda: BreakerPolicy(failure_threshold=2.5),  # type: ignore[arg-type]
        lambda: BudgetPolicy(window=0),
        lambda: BudgetPolicy(ratio="0.2"),  # type: ignore[arg-type]
    ],
)
def test_invalid_rejected(build: object) -> None:
    """Out-of-range settings are rejected when the policy is built, as the middleware's
    options are: a ConfigurationError (also a ValueError) naming the field."""
    with pytest.raises(ConfigurationError) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)
    assert info.value.variable in str(info.value)


def test_frozen_and_evolve_validates() -> None:
    """Policies are immutable; attrs.evolve makes validated variants."""
    policy = CallPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.allow_plaintext_replies = True  # type: ignore[misc]
    with pytest.raises(ValueError):
        attrs.evolve(policy.timeout, deadline=-1)


def test_backoff_grows_with_jitter() -> None:
    """Backoff doubles per retry, is capped, and its jitter keeps it above half."""
    retry = RetryPolicy(backoff_base=0.1, backoff_max=1.0, jitter=0.5)
    assert retry.backoff(1, lambda: 0.0) == pytest.approx(0.05)
    assert retry.backoff(1, lambda: 1.0) == pytest.approx(0.1)
    assert retry.backoff(3, lambda: 1.0) == pytest.approx(0.4)
    assert retry.backoff(10, lambda: 1.0) == pytest.approx(1.0)
    assert RetryPolicy().backoff(1, lambda: 0.0) > 0


def test_defaults() -> None:
    """The documented defaults hold."""
    policy = CallPolicy()
    assert (policy.timeout.deadline, policy.timeout.connect) == (10.0, 1.0)
    assert (policy.budget.ratio, policy.budget.window, policy.budget.min_per_second) == (
        0.2,
        10.0,
        10.0,
    )
    assert policy.retry.retry_statuses == {429, 502, 503, 504}
    assert policy.allow_plaintext_replies is False


def test_equal_retry_policies_share_one_urllib3_retry_that_never_changes() -> None:
    """to_urllib3 builds a Retry once per distinct policy; counting attempts makes new ones."""
    first, again, other = RetryPolicy(), RetryPolicy(), RetryPolicy(retries=5)
    retry = first.to_urllib3()
    assert again.to_urllib3() is retry and other.to_urllib3() is not retry
    assert (retry.total, other.to_urllib3().total) == (2, 5)
    counted = retry.increment("GET", "/x")
    assert (counted.total, retry.total, len(retry.history)) == (1, 2, 0)
