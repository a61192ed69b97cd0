"""The deadline bounds reading the answer's body, not only each socket read."""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs
import pytest

from mscomm_sync.client.policies import CallPolicy, TimeoutPolicy
from mscomm_sync.errors import DeadlineExceededError, ServiceUnavailableError
from mscomm_sync.registry import FileRegistry

from .servers import HeaderTrickleServer, TrickleServer, sealed_trickle


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_trickled_body_stops_at_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], method: str
) -> None:
    """A body trickled one byte per 0.05 s (each inside any attempt's read timeout) raises
    DeadlineExceededError, not the whole answer. A GET's attempts each have a share of the
    deadline for their whole answer, so it is retried; a POST's one attempt has it all."""
    plaintext = attrs.evolve(CallPolicy(), allow_plaintext_replies=True)
    with TrickleServer(length=80, interval=0.05) as server:
        registry.register("billing", server.url)
        client = make_client(
            clock=time.monotonic, sleep=time.sleep, policies={"billing": plaintext}
        )
        with pytest.raises(DeadlineExceededError) as info:
            client.request(target_service="billing", endpoint="/x", method=method, timeout=0.5)
        assert (info.value.service, info.value.timeout) == ("billing", 0.5)
        assert server.requests == 1 if method == "POST" else server.requests in (2, 3)


@pytest.mark.parametrize(
    "serve",
    [
        lambda: TrickleServer(length=5, interval=2.0),
        lambda: sealed_trickle(64 * 1024 - 1, burst=60_000, interval=2.0),
        lambda: sealed_trickle(200_000, burst=60_000, interval=2.0),
    ],
    ids=["plaintext", "sealed-pieces", "sealed-buffer"],
)
def test_attempt_timeout_while_reading_body(
    registry: FileRegistry, make_client: Callable[..., Any], serve: Callable[[], TrickleServer]
) -> None:
    """A body pause longer than the attempt's read timeout fails the attempt, not the call.

    Sealed answers of 64 KiB or more are read into one buffer, smaller ones
    in pieces; both ways hold to the attempt's timeout.
    """
    policy = attrs.evolve(
        CallPolicy(),
        allow_plaintext_replies=True,
        timeout=TimeoutPolicy(deadline=30, attempt=0.3),
    )
    with serve() as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep, policies={"billing": policy})
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        assert not isinstance(info.value, DeadlineExceededError)
        assert info.value.reason == "ReadTimeout"
        assert (info.value.attempts, server.requests) == (1, 1)


# 0.4 s a share: three attempts (the GET's retries) cannot all end before the 1 s deadline,
# whatever the backoffs' jitter draws (at most 0.05 + 0.1 s), so the third is always cut
# by the deadline itself. With 0.3 s, three attempts and short backoffs could finish
# in 0.98 s and end the call on its retries instead (AnswerLostError), by chance.
@pytest.mark.parametrize("attempt", [None, 0.4], ids=["no-attempt-timeout", "attempt-timeout"])
def test_trickled_status_line_and_headers_stop_at_the_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], attempt: Any
) -> None:
    """A server that sends its status line and headers a byte every 0.05 s (each inside
    the read timeout, so every socket read succeeds) is cut off when each attempt's share
    of the deadline passes, and the call when its deadline does: DeadlineExceededError,
    and most of its 455 bytes never sent."""
    policy = attrs.evolve(CallPolicy(), timeout=TimeoutPolicy(deadline=30, attempt=attempt))
    with HeaderTrickleServer(interval=0.05) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep, policies={"billing": policy})
        with pytest.raises(DeadlineExceededError) as info:
            client.request(target_service="billing", endpoint="/x", timeout=1)
        assert (info.value.service, info.value.timeout) == ("billing", 1)
        assert 2 <= server.requests <= 3  # the GET's attempts, each cut at its share
        assert server.done.wait(15)
    # A client that read on past its deadline would have taken all of them (22 s).
    assert server.sent < len(HeaderTrickleServer.HEAD) // 2


@pytest.mark.parametrize(("method", "attempts"), [("GET", 3), ("POST", 1)])
def test_a_hung_instance_costs_an_idempotent_call_a_share_of_its_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], method: str, attempts: int
) -> None:
    """With no per-attempt timeout, a GET to an instance that never answers times out its
    attempts on equal shares of the deadline and is retried (the retry table's promise);
    a POST, which may not be repeated, waits the whole deadline on one attempt."""
    with HeaderTrickleServer(interval=60) as hung:  # accepts, then sends nothing
        registry.register("billing", hung.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        with pytest.raises(DeadlineExceededError):
            client.request(target_service="billing", endpoint="/x", method=method, timeout=1.5)
        assert hung.requests == attempts
