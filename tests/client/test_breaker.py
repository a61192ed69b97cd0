"""The circuit breaker: locked state, one probe, jittered open period, driven by a fake clock."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import attrs
import pytest

from mscomm_sync.client.balancer import DEFAULT_EJECTION
from mscomm_sync.client.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from mscomm_sync.client.policies import BreakerPolicy, CallPolicy, RetryPolicy
from mscomm_sync.errors import CircuitOpenError, InsecureResponseError, ServiceUnavailableError
from mscomm_sync.registry import FileRegistry

from .servers import FakeClock, Recorder, dead_url, echo, json_app, sealed


def breaker(clock: FakeClock, random: float = 0.5, **policy: Any) -> CircuitBreaker:
    """Build a breaker for "billing" on the fake clock."""
    policy.setdefault("jitter", 0.0)
    return CircuitBreaker("billing", BreakerPolicy(**policy), clock=clock, random=lambda: random)


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.record_failure(b.acquire())


def test_opens_after_threshold(clock: FakeClock) -> None:
    """Consecutive failures up to the threshold open the circuit and calls are refused."""
    b = breaker(clock, failure_threshold=3, recovery_timeout=30)
    fail(b, 2)
    assert b.state == CLOSED
    fail(b, 1)
    assert b.state == OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.service == "billing"
    assert info.value.retry_after == pytest.approx(30)


def test_success_resets_count(clock: FakeClock) -> None:
    """A success between failures resets the consecutive count."""
    b = breaker(clock, failure_threshold=2)
    fail(b, 1)
    b.record_success(b.acquire())
    fail(b, 1)
    assert b.state == CLOSED


def test_single_probe_when_half_open(clock: FakeClock) -> None:
    """After the open period exactly one caller probes; the others are refused."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=10)
    fail(b, 1)
    clock.advance(10)
    assert b.state == HALF_OPEN
    assert b.acquire() is True
    with pytest.raises(CircuitOpenError):
        b.acquire()


def test_probe_success_closes(clock: FakeClock) -> None:
    """A successful probe closes the circuit."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=10)
    fail(b, 1)
    clock.advance(10)
    b.record_success(b.acquire())
    assert b.state == CLOSED
    assert b.acquire() is False


def test_probe_failure_reopens(clock: FakeClock) -> None:
    """A failed probe opens the circuit for another full period."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=10)
    fail(b, 1)
    clock.advance(10)
    b.record_failure(b.acquire())
    assert b.state == OPEN
    assert b.open_remaining == pytest.approx(10)


def test_released_probe_lets_next_caller_probe(clock: FakeClock) -> None:
    """A probe that proved nothing hands the probe to the next caller."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=10)
    fail(b, 1)
    clock.advance(10)
    b.release(b.acquire())
    assert b.acquire() is True


def test_concurrent_half_open_single_probe(clock: FakeClock) -> None:
    """Of 16 threads racing in half-open, exactly one gets the probe."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=1)
    fail(b, 1)
    clock.advance(1)
    start = threading.Barrier(16)
    probes: list[bool] = []
    refused: list[bool] = []

    def race() -> None:
        start.wait(10)
        try:
            probes.append(b.acquire())
        except CircuitOpenError:
            refused.append(True)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert probes == [True]
    assert len(refused) == 15


@pytest.mark.parametrize(("random", "period"), [(0.0, 27.0), (1.0, 33.0)])
def test_open_period_is_jittered(clock: FakeClock, random: float, period: float) -> None:
    """The open period is the recovery timeout scaled by 1 ± jitter."""
    b = breaker(clock, random, failure_threshold=1, recovery_timeout=30, jitter=0.1)
    fail(b, 1)
    assert b.open_remaining == pytest.approx(period)


def test_zero_threshold_disables(clock: FakeClock) -> None:
    """failure_threshold=0 is honoured: the circuit never opens."""
    b = breaker(clock, failure_threshold=0)
    fail(b, 50)
    assert b.state == CLOSED


def test_zero_recovery_probes_at_once(clock: FakeClock) -> None:
    """recovery_timeout=0 is honoured: the next call after opening is a probe."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=0)
    fail(b, 1)
    assert b.acquire() is True


def test_context_manager_checks_open_state(clock: FakeClock) -> None:
    """``with breaker:`` and ``call()`` refuse while open, unlike the base package."""
    b = breaker(clock, failure_threshold=1, recovery_timeout=30)
    with pytest.raises(ValueError), b:
        raise ValueError("boom")
    ran: list[int] = []
    with pytest.raises(CircuitOpenError):
        b.call(lambda: ran.append(1))
    assert ran == []


def test_listener_sees_transitions(clock: FakeClock) -> None:
    """The listener is told every transition, in order."""
    seen: list[tuple[str, str]] = []
    b = CircuitBreaker(
        "billing",
        BreakerPolicy(failure_threshold=1, recovery_timeout=5, jitter=0),
        clock=clock,
        listener=lambda br, old, new: seen.append((old, new)),
    )
    fail(b, 1)
    clock.advance(5)
    b.record_success(b.acquire())
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_repr(clock: FakeClock) -> None:
    """The repr names the target, state and failure count."""
    b = breaker(clock, failure_threshold=2)
    fail(b, 2)
    assert repr(b) == "<CircuitBreaker target='billing' state='open' failures=2>"


# -- through the client ------------------------------------------------------


def _switchable(state: dict[str, int]) -> Callable[[dict[str, Any]], Any]:
    def handler(environ: dict[str, Any]) -> Any:
        return state["status"], [], b""

    return handler


def test_client_breaker_cycle(
    serve: Callable[..., Any],
    make_client: Callable[..., Any],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """5xx answers open the circuit, calls then fail fast, and a good probe closes it."""
    caplog.set_level(logging.WARNING, logger="mscomm_sync.client")
    state = {"status": 500}
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/x": _switchable(state)})))
    seen: list[tuple[str, str]] = []
    policy = attrs.evolve(
        CallPolicy(), breaker=BreakerPolicy(failure_threshold=2, recovery_timeout=30, jitter=0)
    )
    client = make_client(
        policies={"billing": policy}, breaker_listener=lambda b, old, new: seen.append((old, new))
    )
    for _ in range(2):
        assert client.request(target_service="billing", endpoint="/x").status_code == 500
    with pytest.raises(CircuitOpenError) as info:
        client.request(target_service="billing", endpoint="/x")
    assert info.value.retry_after == pytest.approx(30)
    assert recorder.hits["/x"] == 2
    clock.advance(31)
    state["status"] = 200
    assert client.request(target_service="billing", endpoint="/x").status_code == 200
    assert client.breaker("billing").state == CLOSED
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    lines = [r.getMessage() for r in caplog.records if r.name == "mscomm_sync.client"]
    assert [line for line in lines if line.startswith("circuit ")] == [
        "circuit closed -> open (service=billing failures=2)",
        "circuit open -> half_open (service=billing failures=2)",
        "circuit half_open -> closed (service=billing failures=0)",
    ]


def test_4xx_is_not_a_failure(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """Client errors (4xx) never open the circuit."""
    serve(sealed(json_app(Recorder(), {})))
    policy = attrs.evolve(CallPolicy(), breaker=BreakerPolicy(failure_threshold=1))
    client = make_client(policies={"billing": policy})
    for _ in range(3):
        assert client.request(target_service="billing", endpoint="/none").status_code == 404
    assert client.breaker("billing").state == CLOSED


def test_failure_is_a_call_after_failover(
    serve: Callable[..., Any],
    registry: FileRegistry,
    make_client: Callable[..., Any],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dead instance among live ones, tried first by every call, does not open the circuit."""
    dead = dead_url()
    registry.register("billing", dead)
    serve(sealed(json_app(Recorder(), {"/echo": echo})))
    first = registry.get_instances("billing")[0].url
    pick_dead: Callable[[], float] = (lambda: 0.0) if first == dead else (lambda: 0.99)
    policy = attrs.evolve(CallPolicy(), breaker=BreakerPolicy(failure_threshold=1))
    client = make_client(policies={"billing": policy}, random=pick_dead)
    caplog.set_level(logging.INFO, logger="mscomm_sync.client")
    for _ in range(6):
        assert client.request(target_service="billing", endpoint="/echo").status_code == 200
        clock.advance(DEFAULT_EJECTION + 1)  # so the next call picks the dead one again
    failovers = [
        r.getMessage()
        for r in caplog.records
        if r.name == "mscomm_sync.client" and r.getMessage().startswith("failover ")
    ]
    assert len(failovers) == 6
    assert all(f"from={dead} " in line for line in failovers)
    assert client.breaker("billing").state == CLOSED


@pytest.mark.parametrize("status", [500, 503])
def test_unsealed_5xx_is_a_failure(
    serve: Callable[..., Any], make_client: Callable[..., Any], clock: FakeClock, status: int
) -> None:
    """Calls ending in an unsealed 5xx (no middleware answered) open the circuit."""
    recorder = Recorder()
    serve(json_app(recorder, {"/x": lambda environ: (status, [], b"down")}))
    breaker_policy = BreakerPolicy(failure_threshold=2, recovery_timeout=30, jitter=0)
    client = make_client(policies={"billing": attrs.evolve(CallPolicy(), breaker=breaker_policy)})
    for _ in range(2):
        with pytest.raises(InsecureResponseError):
            client.request(target_service="billing", endpoint="/x")
    assert client.breaker("billing").state == OPEN
    sent = recorder.hits["/x"]
    with pytest.raises(CircuitOpenError):
        client.request(target_service="billing", endpoint="/x")
    assert recorder.hits["/x"] == sent
    clock.advance(30)
    with pytest.raises(InsecureResponseError):
        client.request(target_service="billing", endpoint="/x")  # the probe
    assert client.breaker("billing").state == OPEN


def test_unreachable_service_opens(registry: FileRegistry, make_client: Callable[..., Any]) -> None:
    """Calls that fail at the transport level count, and the open circuit sends nothing."""
    registry.register("billing", dead_url())
    policy = attrs.evolve(
        CallPolicy(), breaker=BreakerPolicy(failure_threshold=2), retry=RetryPolicy(retries=0)
    )
    client = make_client(policies={"billing": policy})
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            client.request(target_service="billing", endpoint="/x")
    with pytest.raises(CircuitOpenError):
        client.request(target_service="billing", endpoint="/x")


def test_breakers_belong_to_clients(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Two clients never share a breaker."""
    assert make_client().breaker("billing") is not make_client().breaker("billing")
