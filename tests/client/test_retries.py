"""Retries, failover, deadlines and the retry budget, against real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import attrs
import pytest
import requests

from mscomm_sync.client.policies import BudgetPolicy, CallPolicy, RetryPolicy, TimeoutPolicy
from mscomm_sync.errors import (
    DeadlineExceededError,
    InsecureResponseError,
    ServiceUnavailableError,
)
from mscomm_sync.registry import FileRegistry

from .servers import FakeClock, RawServer, Recorder, dead_url, echo, json_app, sealed

Reply = tuple[int, list[tuple[str, str]], bytes]


def policy(**changes: Any) -> CallPolicy:
    """Return the default CallPolicy with some of its parts replaced."""
    return attrs.evolve(CallPolicy(), **changes)


def plaintext(**changes: Any) -> CallPolicy:
    """A policy that accepts the raw server's unsealed answers."""
    return attrs.evolve(policy(**changes), allow_plaintext_replies=True)


def test_dead_instance_fails_over(
    serve: Callable[..., Any],
    registry: FileRegistry,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused connection fails over to a live instance, even for a POST, and is logged."""
    dead = dead_url()
    registry.register("billing", dead)
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/echo": echo})))
    urls = [i.url for i in registry.get_instances("billing")]
    pick_dead: Callable[[], float] = (lambda: 0.0) if urls[0] == dead else (lambda: 0.99)
    client = make_client(random=pick_dead)
    caplog.set_level(logging.INFO, logger="mscomm_sync.client")
    resp = client.request(
        target_service="billing", endpoint="/echo", method="POST", payload={"card": "secret-4242"}
    )
    assert resp.status_code == 200
    assert recorder.hits["/echo"] == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "mscomm_sync.client"]
    assert any(m.startswith("failover ") and f"from={dead} " in m for m in messages)
    assert not any("secret-4242" in m for m in messages)


def test_all_instances_refuse(registry: FileRegistry, make_client: Callable[..., Any]) -> None:
    """When every connection is refused the call raises ServiceUnavailableError with fields."""
    registry.register("billing", dead_url())
    registry.register("billing", dead_url())
    with pytest.raises(ServiceUnavailableError) as info:
        make_client().request(target_service="billing", endpoint="/x", method="POST", payload=b"")
    err = info.value
    assert isinstance(err, requests.ConnectionError)
    assert (err.service, err.attempts) == ("billing", 3)
    assert isinstance(err.last_error, requests.ConnectionError)


def _truncated(n: int) -> tuple[bytes, bool]:
    # Marked sealed: the client reads only sealed (or allowed plaintext) bodies.
    return (
        b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\nContent-Length: 100\r\n\r\npartial",
        True,
    )


@pytest.mark.parametrize(
    ("method", "idempotent", "sent"),
    [("GET", None, 3), ("POST", None, 1), ("POST", True, 3), ("GET", False, 1)],
)
def test_reset_mid_response(
    registry: FileRegistry,
    make_client: Callable[..., Any],
    method: str,
    idempotent: Any,
    sent: int,
) -> None:
    """A connection closed mid-body is retried only when the call may be repeated."""
    with RawServer(_truncated) as server:
        registry.register("billing", server.url)
        with pytest.raises(ServiceUnavailableError):
            make_client().request(
                target_service="billing", endpoint="/x", method=method, idempotent=idempotent
            )
        assert server.requests == sent


def _drop_second(n: int) -> tuple[bytes, bool]:
    if n == 0:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False
    return b"", True


def test_reset_on_reused_connection_post(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A POST whose reused keep-alive connection is closed unanswered is not repeated."""
    with RawServer(_drop_second) as server:
        registry.register("billing", server.url)
        client = make_client(policies={"billing": plaintext()})
        assert client.request(target_service="billing", endpoint="/x", method="POST").text == "ok"
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        assert info.value.attempts == 1
        assert server.requests == 2


def test_reset_on_reused_connection_get(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A GET whose reused keep-alive connection is closed unanswered is retried."""
    with RawServer(_drop_second) as server:
        registry.register("billing", server.url)
        client = make_client(policies={"billing": plaintext()})
        client.request(target_service="billing", endpoint="/x")
        assert client.request(target_service="billing", endpoint="/x").text == "ok"
        assert server.requests == 3


@pytest.fixture
def slow(serve: Callable[..., Any]) -> Any:
    """A service whose /slow answers only after the test ends (or 10 s)."""
    release = threading.Event()
    recorder = Recorder()

    def handler(environ: dict[str, Any]) -> Reply:
        release.wait(10)
        return echo(environ)

    serve(sealed(json_app(recorder, {"/slow": handler})))
    yield recorder
    release.set()


@pytest.mark.parametrize(("method", "sent"), [("GET", 3), ("POST", 1)])
def test_slower_than_deadline(
    slow: Recorder, make_client: Callable[..., Any], method: str, sent: int
) -> None:
    """A response slower than the deadline raises DeadlineExceededError (a requests.Timeout);
    a GET's attempts each had a share of it, a POST's one attempt all of it."""
    client = make_client(clock=time.monotonic, sleep=time.sleep)
    with pytest.raises(DeadlineExceededError) as info:
        client.request(target_service="billing", endpoint="/slow", method=method, timeout=0.5)
    assert isinstance(info.value, requests.Timeout)
    assert (info.value.service, info.value.timeout) == ("billing", 0.5)
    assert slow.hits["/slow"] == sent


@pytest.mark.parametrize(("method", "sent"), [("POST", 1), ("GET", 3)])
def test_attempt_timeout(
    slow: Recorder, make_client: Callable[..., Any], method: str, sent: int
) -> None:
    """A POST whose attempt timed out is not repeated; a GET is."""
    timeouts = TimeoutPolicy(deadline=30, attempt=0.3)
    client = make_client(
        clock=time.monotonic, sleep=time.sleep, policies={"billing": policy(timeout=timeouts)}
    )
    with pytest.raises(ServiceUnavailableError) as info:
        client.request(target_service="billing", endpoint="/slow", method=method)
    assert isinstance(info.value.last_error, requests.Timeout)
    deadline = time.monotonic() + 10
    while slow.hits["/slow"] < sent and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow.hits["/slow"] == sent


def _flaky(answers: list[Reply]) -> Callable[[dict[str, Any]], Reply]:
    lock = threading.Lock()

    def handler(environ: dict[str, Any]) -> Reply:
        with lock:
            return answers.pop(0) if len(answers) > 1 else answers[0]

    return handler


def test_503_retry_after(
    serve: Callable[..., Any], make_client: Callable[..., Any], clock: FakeClock
) -> None:
    """A 503 with Retry-After is retried after exactly that pause, with the same request id."""
    recorder = Recorder()
    handler = _flaky([(503, [("Retry-After", "2")], b"busy"), (200, [], b"done")])
    serve(sealed(json_app(recorder, {"/x": handler})))
    resp = make_client().request(target_service="billing", endpoint="/x")
    assert (resp.status_code, resp.content) == (200, b"done")
    assert clock.sleeps == [2.0]
    assert recorder.hits["/x"] == 2
    first, second = recorder.request_ids
    assert first and first == second


def test_retry_after_past_deadline(
    serve: Callable[..., Any], make_client: Callable[..., Any], clock: FakeClock
) -> None:
    """A Retry-After beyond the deadline returns the 503 at once instead of sleeping."""
    serve(sealed(json_app(Recorder(), {"/x": _flaky([(503, [("Retry-After", "60")], b"")])})))
    resp = make_client().request(target_service="billing", endpoint="/x", timeout=10)
    assert resp.status_code == 503
    assert clock.sleeps == []


def test_backoff_stops_at_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], clock: FakeClock
) -> None:
    """A backoff that would pass the deadline raises DeadlineExceededError without sleeping."""
    registry.register("billing", dead_url())
    retry = RetryPolicy(retries=5, backoff_base=4.0, backoff_max=60.0)
    client = make_client(policies={"billing": policy(retry=retry)})
    with pytest.raises(DeadlineExceededError):
        client.request(target_service="billing", endpoint="/x", timeout=9)
    assert 1 <= len(clock.sleeps) <= 2
    assert sum(clock.sleeps) < 9


def test_503_storm_budget_holds(serve: Callable[..., Any], make_client: Callable[..., Any]) -> None:
    """In a 503 storm the retries stay within the budget's 20% of calls."""
    recorder = Recorder()
    serve(sealed(json_app(recorder, {"/x": _flaky([(503, [], b"")])})))
    budget = BudgetPolicy(ratio=0.2, window=10, min_per_second=0)
    breaker_off = attrs.evolve(CallPolicy().breaker, failure_threshold=0)
    client = make_client(policies={"billing": policy(budget=budget, breaker=breaker_off)})
    for _ in range(50):
        assert client.request(target_service="billing", endpoint="/x").status_code == 503
    assert 50 <= recorder.hits["/x"] <= 50 + 10


def test_default_backoff_is_never_zero(
    registry: FileRegistry, make_client: Callable[..., Any], clock: FakeClock
) -> None:
    """With default settings every retry pauses for a positive, jittered time."""
    registry.register("billing", dead_url())
    with pytest.raises(ServiceUnavailableError):
        make_client().request(target_service="billing", endpoint="/x")
    assert len(clock.sleeps) == 2
    assert all(s > 0 for s in clock.sleeps)


def _unsealed_once(inner: Any) -> Any:
    """Put an intermediary in front of ``inner`` that answers the first request itself."""
    seen: list[int] = []

    def proxy(environ: dict[str, Any], start_response: Any) -> Any:
        if not seen:
            seen.append(1)
            start_response("503 Service Unavailable", [("Content-Length", "4")])
            return [b"busy"]
        return inner(environ, start_response)

    return proxy


def test_unsealed_503_from_intermediary_retried(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """An intermediary's unsealed 503 is retried for a GET and its body never returned."""
    serve(_unsealed_once(sealed(json_app(Recorder(), {"/echo": echo}))))
    resp = make_client().request(target_service="billing", endpoint="/echo")
    assert resp.json()["caller"] == "orders"


def test_unsealed_503_refused_for_post(
    serve: Callable[..., Any], make_client: Callable[..., Any]
) -> None:
    """An intermediary's unsealed 503 to a POST raises InsecureResponseError at once."""
    serve(_unsealed_once(sealed(json_app(Recorder(), {"/echo": echo}))))
    with pytest.raises(InsecureResponseError) as info:
        make_client().request(target_service="billing", endpoint="/echo", method="POST")
    assert info.value.status == 503


def test_connect_and_deadline_tuple(slow: Recorder, make_client: Callable[..., Any]) -> None:
    """``timeout=(connect, deadline)`` sets the deadline the error reports."""
    client = make_client(clock=time.monotonic, sleep=time.sleep)
    with pytest.raises(DeadlineExceededError) as info:
        client.request(target_service="billing", endpoint="/slow", timeout=(0.5, 0.4))
    assert info.value.timeout == 0.4
