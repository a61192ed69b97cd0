"""Deadlines against slow instances: trickled answers and added latency, for real.

Every deadline here is far from the delays that must fit in it; timing is
never asserted, only the outcome and what the service ran.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from mscomm_sync import DeadlineAfterSendingError, Delivery
from mscomm_sync.testing import Fault, FaultProxy

from .services import policy

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trickled_answer_hits_the_deadline(
    method: str, serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """An answer trickled a byte every 50 ms ends the call at its deadline with
    DeadlineAfterSendingError (may have been delivered: the service ran it). A GET's
    attempts each get a share of the deadline for the whole answer, so it is retried on the
    lone instance; a POST's one attempt has the whole deadline."""
    app, url = serve("billing")
    with FaultProxy(url, fault=Fault(trickle=1, trickle_interval=0.05)) as proxy:
        registry.register("billing", proxy.url)
        with pytest.raises(DeadlineAfterSendingError) as info:
            make_client(policy=policy(0.3)).request(
                target_service="billing", endpoint="/report", method=method
            )
        stats = proxy.stats()
    assert info.value.delivery is Delivery.MAYBE_DELIVERED
    assert info.value.timeout == 0.3
    if method == "POST":
        assert app.runs["/report"] == 1
        assert 0 < stats.bytes_downstream < 100  # a few bytes of the status line came
    else:
        assert app.runs["/report"] in (2, 3)  # retried within the deadline


def test_latency_well_inside_the_deadline_still_succeeds(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """50 ms more per connection and 10 ms per chunk, with a 5 s deadline: answered at the
    first attempt."""
    app, url = serve("billing")
    with FaultProxy(url, fault=Fault(latency=0.05, chunk_latency=0.01)) as proxy:
        registry.register("billing", proxy.url)
        client = make_client(policy=policy(5.0))
        resp = client.request(target_service="billing", endpoint="/balance")
        resp = client.request(target_service="billing", endpoint="/charge", method="POST")
        stats = proxy.stats()
    assert resp.json() == {"instance": "billing", "caller": "orders"}
    assert (app.runs["/balance"], app.runs["/charge"]) == (1, 1)
    assert (stats.connections, stats.delayed) == (1, 1)  # kept alive between the calls


def test_a_slow_lone_instance_needs_a_per_attempt_timeout(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """An instance that answers in 40% of the deadline fails a GET under the default
    per-attempt share (a third of the deadline, then half of what is left): three
    attempts time out, each on a new connection. With ``attempt`` set to the whole
    deadline the same GET is answered at its first attempt."""
    _app, url = serve("billing")
    with FaultProxy(url, fault=Fault(latency=0.25)) as proxy:
        registry.register("billing", proxy.url)
        with pytest.raises(DeadlineAfterSendingError):
            make_client(policy=policy(0.6)).request(target_service="billing", endpoint="/slow")
        assert proxy.stats().delayed == 3
        patient = make_client(policy=policy(0.6, attempt=0.6))
        resp = patient.request(target_service="billing", endpoint="/slow")
        assert proxy.stats().delayed == 4
    assert resp.json()["instance"] == "billing"
