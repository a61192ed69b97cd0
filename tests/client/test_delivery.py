"""Every failed call says whether its request reached the service, as a field and in its type.

A caller (a Celery task, say) may send again what was certainly not
delivered, and must not blindly send again what may have run.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs
import pytest

from mscomm_sync.client.policies import CallPolicy, RetryPolicy
from mscomm_sync.errors import (
    AnswerLostError,
    CircuitOpenError,
    DeadlineAfterSendingError,
    DeadlineBeforeSendingError,
    Delivery,
    MaybeDeliveredError,
    NotDeliveredError,
    ServiceNotFoundError,
    ServiceUnreachableError,
    UnverifiedAnswerError,
)
from mscomm_sync.registry import FileRegistry

from .servers import RawServer, Recorder, TrickleServer, dead_url, json_app, sealed, sealed_trickle


def test_every_instance_refusing_is_not_delivered(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Refused connections on every attempt: ServiceUnreachableError, not delivered."""
    registry.register("billing", dead_url())
    with pytest.raises(NotDeliveredError) as info:
        make_client().request(target_service="billing", endpoint="/x", method="POST")
    assert isinstance(info.value, ServiceUnreachableError)
    assert info.value.delivery is Delivery.NOT_DELIVERED
    assert info.value.attempts == 3


def _reset_after_request(n: int) -> tuple[bytes, bool]:
    return b"", True  # read the request, then hang up without a word


def test_a_post_whose_answer_was_lost_may_have_been_delivered(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A POST that reached a server which hung up before answering: AnswerLostError."""
    with RawServer(_reset_after_request) as server:
        registry.register("billing", server.url)
        with pytest.raises(MaybeDeliveredError) as info:
            make_client().request(target_service="billing", endpoint="/x", method="POST")
        assert isinstance(info.value, AnswerLostError)
        assert info.value.delivery is Delivery.MAYBE_DELIVERED
        assert server.requests == 1


def test_one_lost_answer_among_refusals_may_have_been_delivered(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A GET whose first attempt reached a server (and lost its answer) is maybe delivered,
    even if every later attempt was refused."""
    with RawServer(_reset_after_request) as server:
        registry.register("billing", server.url)
        registry.register("billing", dead_url())
        urls = [i.url for i in registry.get_instances("billing")]
        first_live: Callable[[], float] = (lambda: 0.0) if urls[0] == server.url else (lambda: 0.99)
        client = make_client(
            random=first_live, policy=attrs.evolve(CallPolicy(), retry=RetryPolicy(retries=1))
        )
        with pytest.raises(AnswerLostError):
            client.request(target_service="billing", endpoint="/x", method="GET")
        assert server.requests == 1


def test_deadline_while_waiting_to_retry_a_refusal_is_before_sending(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A deadline that passes in the pause after refused connections: nothing was sent."""
    registry.register("billing", dead_url())
    slow_retries = attrs.evolve(CallPolicy(), retry=RetryPolicy(backoff_base=5.0, jitter=0))
    with pytest.raises(DeadlineBeforeSendingError) as info:
        make_client(policy=slow_retries).request(
            target_service="billing", endpoint="/x", method="POST", timeout=1
        )
    assert info.value.delivery is Delivery.NOT_DELIVERED


def test_deadline_while_reading_the_answer_is_after_sending(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A deadline that passes while the answer trickles in: the request may have run."""
    with sealed_trickle(200_000, burst=60_000, interval=0.2) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        with pytest.raises(DeadlineAfterSendingError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST", timeout=0.5)
        assert info.value.delivery is Delivery.MAYBE_DELIVERED


def test_an_answer_that_does_not_verify_was_answered(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A sealed-looking answer that fails verification: UnverifiedAnswerError, answered."""
    with TrickleServer(
        length=32, interval=0.0, burst=32, headers=b"X-Encrypted-Payload: true\r\n"
    ) as server:
        registry.register("billing", server.url)
        with pytest.raises(UnverifiedAnswerError) as info:
            make_client().request(target_service="billing", endpoint="/x", method="POST")
        assert info.value.delivery is Delivery.ANSWERED


def test_nothing_registered_and_open_circuit_are_not_delivered(
    serve: Callable[..., Any], registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """An unknown service, and a call the breaker stops, never sent anything."""
    with pytest.raises(NotDeliveredError) as info:
        make_client().request(target_service="nobody", endpoint="/x")
    assert isinstance(info.value, ServiceNotFoundError)
    serve(sealed(json_app(Recorder(), {})))
    client = make_client()
    breaker = client.breaker("billing")
    for _ in range(breaker.policy.failure_threshold):
        breaker.record_failure(False)
    with pytest.raises(NotDeliveredError) as open_circuit:
        client.request(target_service="billing", endpoint="/x", method="POST")
    assert isinstance(open_circuit.value, CircuitOpenError)
