"""The retry budget: a fraction of recent calls, a floor, a sliding window."""

from __future__ import annotations

from mscomm_sync.budget import RetryBudget
from mscomm_sync.policies import BudgetPolicy

from .servers import FakeClock


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    spent = 0
    while spent < limit and budget.try_spend():
        spent += 1
    return spent


def test_ratio_of_calls(clock: FakeClock) -> None:
    """Without a floor, 100 calls allow exactly 20 retries."""
    budget = RetryBudget("billing", BudgetPolicy(ratio=0.2, min_per_second=0), clock=clock)
    for _ in range(100):
        budget.record_call()
    assert spend_all(budget) == 20


def test_floor_without_traffic(clock: FakeClock) -> None:
    """With no calls at all, the floor allows min_per_second times the window."""
    budget = RetryBudget("billing", BudgetPolicy(window=10, min_per_second=10), clock=clock)
    assert spend_all(budget) == 100


def test_zero_budget(clock: FakeClock) -> None:
    """A zero ratio and zero floor allow no retry at all."""
    budget = RetryBudget("billing", BudgetPolicy(ratio=0, min_per_second=0), clock=clock)
    budget.record_call()
    assert budget.try_spend() is False


def test_window_slides(clock: FakeClock) -> None:
    """Calls and retries older than the window no longer count."""
    budget = RetryBudget("billing", BudgetPolicy(ratio=0.5, min_per_second=0), clock=clock)
    for _ in range(10):
        budget.record_call()
    assert spend_all(budget) == 5
    clock.advance(11)
    assert budget.try_spend() is False
    for _ in range(2):
        budget.record_call()
    assert spend_all(budget) == 1


def test_repr(clock: FakeClock) -> None:
    """The repr names the target and what is left."""
    budget = RetryBudget("billing", BudgetPolicy(min_per_second=1, window=10), clock=clock)
    assert repr(budget) == "<RetryBudget target='billing' available=10.0>"
