"""Whether a failed call may have run, under real resets and refusals.

A POST may not be repeated: only a failure that proves the request never left
(a refused connection) lets the client send it again. Each test checks the
error's delivery state against what the service actually ran.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from mscomm_sync import (
    AnswerLostError,
    Delivery,
    MaybeDeliveredError,
    NotDeliveredError,
    ServiceUnreachableError,
)
from mscomm_sync.testing import Fault, FaultProxy

from .services import first_pick, policy

pytestmark = pytest.mark.reliability

#: The answer is reset once the service has run the request.
ANSWER_LOST = Fault(reset_after=0, reset_direction="downstream")


def test_a_post_whose_answer_is_reset_may_have_run_and_is_not_sent_again(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """A POST reset after the service ran it raises AnswerLostError (may have been
    delivered, as it was); it is not retried, not even on the healthy instance."""
    lossy, lossy_url = serve("lossy")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(lossy_url, fault=ANSWER_LOST) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=policy(5.0), random=first_pick(registry, proxy.url))
        with pytest.raises(MaybeDeliveredError) as info:
            client.request(target_service="billing", endpoint="/charge", method="POST")
        stats = proxy.stats()
    assert isinstance(info.value, AnswerLostError)
    assert (info.value.delivery, info.value.attempts) == (Delivery.MAYBE_DELIVERED, 1)
    assert (lossy.runs["/charge"], healthy.runs["/charge"]) == (1, 0)
    assert (stats.connections, stats.reset) == (1, 1)


def test_a_post_refused_at_connect_goes_to_the_other_instance(
    serve: Callable[..., Any],
    registry: Any,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A POST refused at connect certainly never left, so it is sent to the other instance,
    which runs it once; the refusing one never saw a connection."""
    closed, closed_url = serve("closed")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(closed_url, fault=Fault(refuse=True)) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=policy(5.0), random=first_pick(registry, proxy.url))
        caplog.set_level(logging.INFO, logger="mscomm_sync.client")
        resp = client.request(target_service="billing", endpoint="/charge", method="POST")
        stats = proxy.stats()
    assert resp.json()["instance"] == "healthy"
    assert (closed.runs["/charge"], healthy.runs["/charge"], stats.connections) == (0, 1, 0)
    assert any("reason=connection refused" in r.getMessage() for r in caplog.records)


def test_a_post_every_instance_refuses_was_not_delivered(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """A POST refused on all three attempts raises ServiceUnreachableError: not delivered,
    and indeed never run."""
    closed, closed_url = serve("closed")
    with FaultProxy(closed_url, fault=Fault(refuse=True)) as proxy:
        registry.register("billing", proxy.url)
        with pytest.raises(NotDeliveredError) as info:
            make_client(policy=policy(5.0)).request(
                target_service="billing", endpoint="/charge", method="POST"
            )
    assert isinstance(info.value, ServiceUnreachableError)
    assert (info.value.attempts, info.value.reason) == (3, "connection refused")
    assert closed.runs["/charge"] == 0


def test_a_reset_on_accept_is_only_maybe_delivered(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """A connection accepted and at once reset never reached the service, but once the
    client has sent its request it cannot tell that from a lost answer: the POST raises
    AnswerLostError (may have been).

    Sometimes the reset beats the client's own connect (the kernel finishes the
    handshake before the proxy accepts and resets): then nothing was sent, the client
    says so (ServiceUnreachableError, not delivered) and retries the connect, which is
    safe for a POST; every retry meets the same proxy. Either way it never ran.
    """
    app, url = serve("billing")
    with FaultProxy(url, fault=Fault(reset_after=0, reset_direction="upstream")) as proxy:
        registry.register("billing", proxy.url)
        with pytest.raises((AnswerLostError, ServiceUnreachableError)) as caught:
            make_client(policy=policy(5.0)).request(
                target_service="billing", endpoint="/charge", method="POST"
            )
        resets = proxy.stats().reset
    error = caught.value
    if isinstance(error, AnswerLostError):
        assert error.delivery is Delivery.MAYBE_DELIVERED
        assert resets >= 1  # the attempt that was sent, after any that never connected
    else:
        assert error.delivery is Delivery.NOT_DELIVERED
        assert error.attempts == resets  # each attempt met a reset before it could send
    assert app.runs["/charge"] == 0


def test_a_get_whose_answer_is_reset_is_sent_again(
    serve: Callable[..., Any], registry: Any, make_client: Callable[..., Any]
) -> None:
    """A GET may be repeated: after its answer is reset it fails over and is answered, having
    run on both instances."""
    lossy, lossy_url = serve("lossy")
    healthy, healthy_url = serve("healthy")
    with FaultProxy(lossy_url, fault=ANSWER_LOST) as proxy:
        registry.register("billing", proxy.url)
        registry.register("billing", healthy_url)
        client = make_client(policy=policy(5.0), random=first_pick(registry, proxy.url))
        resp = client.request(target_service="billing", endpoint="/balance")
    assert resp.json()["instance"] == "healthy"
    assert (lossy.runs["/balance"], healthy.runs["/balance"]) == (1, 1)
