"""Instance choice: power of two choices on in-flight requests, failover, ejection."""

from __future__ import annotations

from mscomm_sync.client.balancer import PowerOfTwoBalancer
from mscomm_sync.registry.base import Instance

from .servers import FakeClock

A = Instance(service="billing", url="http://127.0.0.1:1")
B = Instance(service="billing", url="http://127.0.0.1:2")
C = Instance(service="billing", url="http://127.0.0.1:3")


def test_prefers_fewer_in_flight() -> None:
    """Of the two candidates drawn, the one with fewer requests in flight wins."""
    balancer = PowerOfTwoBalancer(random=lambda: 0.0)
    assert balancer.choose([A, B]) == A
    balancer.start(A.url)
    assert balancer.choose([A, B]) == B
    balancer.finish(A.url)
    assert balancer.in_flight(A.url) == 0


def test_spreads_load() -> None:
    """Over many picks with real randomness every instance is used."""
    balancer = PowerOfTwoBalancer()
    seen = {balancer.choose([A, B, C]).url for _ in range(200)}
    assert seen == {A.url, B.url, C.url}


def test_failover_avoids_tried() -> None:
    """Instances this call already tried are avoided while others remain."""
    balancer = PowerOfTwoBalancer(random=lambda: 0.0)
    assert balancer.choose([A, B], tried=[A.url]) == B
    assert balancer.choose([A], tried=[A.url]) == A


def test_unhealthy_used_when_nothing_else() -> None:
    """Healthy instances are preferred; if all are unhealthy they are tried anyway."""
    sick = Instance(service="billing", url="http://127.0.0.1:9", healthy=False)
    balancer = PowerOfTwoBalancer(random=lambda: 0.0)
    assert balancer.choose([sick, B]) == B
    assert balancer.choose([sick]) == sick


def test_ejected_avoided_for_a_while(clock: FakeClock) -> None:
    """An instance that refused a connection is avoided until its ejection ends."""
    balancer = PowerOfTwoBalancer(random=lambda: 0.0, clock=clock, ejection=5)
    balancer.eject(A.url)
    assert balancer.choose([A, B]) == B
    clock.advance(5)
    assert balancer.choose([A, B]) == A


def test_the_tiers_are_taken_in_order(clock: FakeClock) -> None:
    """Healthy, untried and not ejected; else healthy and untried; else untried; else any."""
    sick = Instance(service="billing", url="http://127.0.0.1:9", healthy=False)
    balancer = PowerOfTwoBalancer(random=lambda: 0.0, clock=clock, ejection=5)
    balancer.eject(A.url)
    assert balancer.choose([A, sick, B, C], tried=[B.url]) == C
    assert balancer.choose([A, sick, B], tried=[B.url]) == A  # ejected, over unhealthy
    assert balancer.choose([sick, B], tried=[B.url]) == sick  # unhealthy, over tried
    assert balancer.choose([B], tried=[B.url]) == B
    clock.advance(5)  # the ejection is over
    assert balancer.choose([sick, A], tried=[]) == A
