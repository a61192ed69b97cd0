"""What a hung instance costs a call, through a real client and real sealed services.

A hung instance accepts connections and never answers (a FaultProxy blackhole).
In the default run the deadline is 1 s; under ``MSCOMM_SOAK=1`` (``make
reliability``) every call uses the default settings (a 10 s deadline, 2
retries), and the figures printed are the ones ``docs/reliability.md``
quotes. Times are printed, never asserted.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import pytest

from mscomm_sync import DeadlineAfterSendingError, Delivery
from mscomm_sync.client.policies import CallPolicy
from mscomm_sync.testing import Fault, FaultProxy

from .services import SOAK, first_pick, policy, report, scaled

pytestmark = pytest.mark.reliability

#: The deadline of calls that fail over: the default (10 s) in a soak run. Short runs keep
#: 1 s, so the healthy instance's attempt still gets a generous share.
DEADLINE = CallPolicy().timeout.deadline if SOAK else 1.0
#: The deadline of calls that only wait: the default in a soak run.
WAITING = CallPolicy().timeout.deadline if SOAK else 0.4
HUNG = Fault(blackhole=True)


def chosen(deadline: float = DEADLINE) -> CallPolicy:
    return CallPolicy() if SOAK else policy(deadline)


def test_a_get_fails_over_from_a_hung_instance(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A GET that tries a hung instance first waits out its attempt's read timeout, fails
    over, and is answered by the healthy instance; the hung one never ran it."""
    hung, hung_url = serve("hung")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(hung_url, fault=HUNG) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=chosen(), random=first_pick(registry, proxy.url))
        caplog.set_level(logging.INFO, logger="mscomm_sync.client")
        started = time.monotonic()
        resp = client.request(target_service="billing", endpoint="/balance")
        elapsed = time.monotonic() - started
        stats = proxy.stats()
    assert resp.json() == {"instance": "healthy", "caller": "orders"}
    assert (stats.blackholed, hung.runs["/balance"], healthy.runs["/balance"]) == (1, 0, 1)
    failovers = [r.getMessage() for r in caplog.records if r.getMessage().startswith("failover")]
    assert len(failovers) == 1
    assert "reason=ReadTimeout" in failovers[0]
    report(
        capsys,
        f"GET, hung instance tried first, then a healthy one: answered in {elapsed:.3f} s"
        f" (deadline {DEADLINE:g} s; the first attempt's share is {DEADLINE / 3:.3f} s)",
    )


def test_later_calls_avoid_a_hung_instance_for_a_while(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An attempt that timed out ejects its instance for the balancer's ejection time (5 s)
    while another remains: the first call pays the hung instance's share, the later ones
    go straight to the healthy instance. The breaker stays closed (it counts calls)."""
    calls = scaled(4, 10)
    _hung, hung_url = serve("hung")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(hung_url, fault=HUNG) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=chosen(), random=first_pick(registry, proxy.url))
        times = []
        for _ in range(calls):
            started = time.monotonic()
            resp = client.request(target_service="billing", endpoint="/balance")
            times.append(time.monotonic() - started)
            assert resp.json()["instance"] == "healthy"
        stats = proxy.stats()
    assert healthy.runs["/balance"] == calls
    assert stats.blackholed == 1  # only the first call tried it
    assert client.breaker("billing").state == "closed"
    report(
        capsys,
        f"{calls} GETs, one of two instances hung: the first took {times[0]:.3f} s (it tried"
        f" the hung one), the others {max(times[1:]):.3f} s at most; {sum(times):.2f} s in all",
    )


def test_a_get_to_a_lone_hung_instance_ends_at_its_deadline(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With only a hung instance, a GET makes its three attempts (three connections, each
    waiting its share) and raises DeadlineAfterSendingError: it may have run."""
    hung, hung_url = serve("hung")
    with FaultProxy(hung_url, fault=HUNG) as proxy:
        registry.register("billing", proxy.url)
        client = make_client(policy=chosen(WAITING))
        started = time.monotonic()
        with pytest.raises(DeadlineAfterSendingError) as info:
            client.request(target_service="billing", endpoint="/balance")
        elapsed = time.monotonic() - started
        stats = proxy.stats()
    assert info.value.delivery is Delivery.MAYBE_DELIVERED
    assert (stats.blackholed, sum(hung.runs.values())) == (3, 0)
    report(capsys, f"GET, lone hung instance: DeadlineAfterSendingError after {elapsed:.3f} s")


def test_a_post_to_a_hung_instance_waits_its_whole_deadline_once(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A POST may not be repeated, so its one attempt waits the whole deadline, even with a
    healthy instance registered; it raises DeadlineAfterSendingError."""
    _hung, hung_url = serve("hung")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(hung_url, fault=HUNG) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=chosen(WAITING), random=first_pick(registry, proxy.url))
        started = time.monotonic()
        with pytest.raises(DeadlineAfterSendingError):
            client.request(target_service="billing", endpoint="/charge", method="POST")
        elapsed = time.monotonic() - started
        stats = proxy.stats()
    assert (stats.blackholed, healthy.runs["/charge"]) == (1, 0)
    report(capsys, f"POST, hung instance: DeadlineAfterSendingError after {elapsed:.3f} s")


def test_a_trickling_instance_costs_a_get_its_share_and_it_fails_over(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An instance that trickles its answer (a byte every 50 ms, each inside the read
    timeout) is held to the attempt's share of the deadline for the whole answer, as a hung
    one is: the GET fails over and is answered by the healthy instance."""
    slow, slow_url = serve("slow")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(slow_url, fault=Fault(trickle=1, trickle_interval=0.05)) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=chosen(), random=first_pick(registry, proxy.url))
        started = time.monotonic()
        resp = client.request(target_service="billing", endpoint="/balance")
        elapsed = time.monotonic() - started
        stats = proxy.stats()
    assert resp.json()["instance"] == "healthy"
    assert (slow.runs["/balance"], healthy.runs["/balance"], stats.trickled) == (1, 1, 1)
    report(
        capsys,
        f"GET, trickling instance tried first, then a healthy one: answered in {elapsed:.3f} s"
        f" ({stats.bytes_downstream} answer bytes of the trickled one had come)",
    )
