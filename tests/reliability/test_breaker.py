"""What takes a failing instance or service out of the way: ejection, the breaker, health checks.

The breaker is per target service and counts calls after failover, so one bad
instance among good ones never opens it: a refusing instance is avoided by
the balancer's ejection instead, and a hung one only by health checks.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from mscomm_sync import AnswerLostError, CircuitOpenError, Delivery
from mscomm_sync.registry.health import HealthCheckConfig
from mscomm_sync.testing import Fault, FaultProxy

from .services import FakeClock, first_pick, policy

pytestmark = pytest.mark.reliability


def test_a_refusing_instance_is_avoided_and_the_breaker_stays_closed(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten GETs that would each try a refusing instance first: the first fails over, the
    instance is then ejected and the other nine go straight to the healthy one; the breaker
    stays closed."""
    _closed, closed_url = serve("closed")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(closed_url, fault=Fault(refuse=True)) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=policy(5.0), random=first_pick(registry, proxy.url))
        caplog.set_level(logging.INFO, logger="mscomm_sync.client")
        for _ in range(10):
            assert client.request(target_service="billing", endpoint="/b").status_code == 200
    failovers = [r for r in caplog.records if r.getMessage().startswith("failover")]
    assert (len(failovers), healthy.runs["/b"]) == (1, 10)
    assert client.breaker("billing").state == "closed"


def test_the_breaker_opens_when_every_instance_fails_and_a_probe_closes_it(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """Three calls that each lose every answer open billing's breaker; the next call fails
    at once with CircuitOpenError and opens no connection; once the open period has passed
    and the fault is gone, one probe closes it."""
    app, url = serve("billing")
    clock = FakeClock()
    with FaultProxy(url, fault=Fault(reset_after=0, reset_direction="downstream")) as proxy:
        registry.register("billing", proxy.url)
        client = make_client(policy=policy(5.0, breaker=3), clock=clock, sleep=clock.sleep)
        for _ in range(3):
            with pytest.raises(AnswerLostError):
                client.request(target_service="billing", endpoint="/b")
        breaker = client.breaker("billing")
        assert breaker.state == "open"
        seen = proxy.stats().connections
        assert seen == 9  # three attempts per call
        with pytest.raises(CircuitOpenError) as info:
            client.request(target_service="billing", endpoint="/b")
        assert info.value.delivery is Delivery.NOT_DELIVERED
        assert proxy.stats().connections == seen
        proxy.set(Fault())
        clock.sleep(breaker.open_remaining + 0.001)
        assert client.request(target_service="billing", endpoint="/b").status_code == 200
    assert breaker.state == "closed"
    assert app.runs["/b"] == 10


def test_health_checks_take_a_hung_instance_out_of_rotation(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """After ``fall`` failed probes a hung instance is unhealthy, and a call that would have
    tried it first goes straight to the healthy one."""
    _hung, hung_url = serve("hung")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(hung_url, fault=Fault(blackhole=True)) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        poller = registry.make_health_poller(HealthCheckConfig(timeout=0.1, fall=2))
        try:
            for _ in range(2):
                poller.poll_once()
        finally:
            poller.stop()
        verdicts = {i.url: i.healthy for i in registry.get_instances("billing")}
        assert verdicts == {proxy.url: False, healthy_url: True}
        probes = proxy.stats().blackholed
        client = make_client(policy=policy(5.0), random=first_pick(registry, proxy.url))
        assert client.request(target_service="billing", endpoint="/b").status_code == 200
        assert proxy.stats().blackholed == probes == 2
    assert healthy.runs["/b"] == 1
