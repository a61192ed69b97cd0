"""The retry budget: a fraction of recent calls, a floor, a sliding window."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any, Callable

import attrs
import pytest
import requests

from mscomm_sync.client.budget import RetryBudget
from mscomm_sync.client.policies import BudgetPolicy, CallPolicy, TimeoutPolicy
from mscomm_sync.errors import ServiceUnavailableError
from mscomm_sync.registry import FileRegistry

from .servers import FakeClock, dead_url

#: No retry budget at all: only free retries can happen.
NO_BUDGET = attrs.evolve(
    CallPolicy(),
    budget=BudgetPolicy(ratio=0, min_per_second=0),
    timeout=TimeoutPolicy(connect=0.2),
)


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


# -- through the client: which retries spend it -------------------------------


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL on 127.0.0.1 whose listener never accepts and whose backlog is full.

    The kernel drops further connection attempts, so connecting times out
    instead of being refused.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    held = [listener]
    try:
        for _ in range(8):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(probe)
            probe.settimeout(0.2)
            try:
                probe.connect(address)
            except OSError:
                break  # the backlog is full: connecting now times out
        else:
            pytest.skip("could not fill the listen backlog on 127.0.0.1")
        yield f"http://{address[0]}:{address[1]}"
    finally:
        for sock in held:
            sock.close()


def test_connect_timeout_retry_spends_budget(
    black_hole: str,
    registry: FileRegistry,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retry after a connect timeout needs the budget: the host may just be overloaded."""
    registry.register("billing", black_hole)
    client = make_client(policies={"billing": NO_BUDGET})
    caplog.set_level(logging.WARNING, logger="mscomm_sync.client")
    with pytest.raises(ServiceUnavailableError) as info:
        client.request(target_service="billing", endpoint="/x", method="POST")
    assert isinstance(info.value.last_error, requests.ConnectTimeout)
    assert info.value.attempts == 1
    assert any(r.getMessage().startswith("retry budget spent ") for r in caplog.records)


def test_refused_retry_is_free(registry: FileRegistry, make_client: Callable[..., Any]) -> None:
    """A retry after a refused connection (nothing listening) does not need the budget."""
    registry.register("billing", dead_url())
    client = make_client(policies={"billing": NO_BUDGET})
    with pytest.raises(ServiceUnavailableError) as info:
        client.request(target_service="billing", endpoint="/x", method="POST")
    assert not isinstance(info.value.last_error, requests.Timeout)
    assert info.value.attempts == 3
