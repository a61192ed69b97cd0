"""Traces across real services: one trace from the caller, through the middleware, to a
nested call; the breaker's refusal; retries and failovers, each an attempt span."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import attrs
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from mscomm_sync import (
    BreakerPolicy,
    CallPolicy,
    CircuitOpenError,
    ServiceUnavailableError,
    current_request_id,
)

from .services import Sdk, Services, attributes, by_name, parent_id

Build = Callable[..., Services]


def answer(body: dict[str, Any], status: str = "200 OK") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def test_one_trace_from_the_caller_through_the_middleware_to_a_nested_call(
    sdk: Sdk, services: Build
) -> None:
    """orders calls billing, whose handler calls ledger: six spans, one trace id, each the
    child of the one before (call, attempt, server, call, attempt, server)."""
    fleet = services("orders", "billing", "ledger")
    seen: dict[str, Any] = {}

    def ledger(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["ledger_request_id"] = current_request_id()
        return answer({"ok": True})(environ, start_response)

    fleet.serve("ledger", ledger, telemetry=sdk.telemetry())
    billing_client = fleet.client("billing", telemetry=sdk.telemetry())

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["billing_request_id"] = current_request_id()
        inner = billing_client.request(target_service="ledger", endpoint="/post", method="POST")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [inner.content]

    fleet.serve("billing", billing, telemetry=sdk.telemetry())
    orders = fleet.client("orders", telemetry=sdk.telemetry())
    resp = orders.request(
        target_service="billing", endpoint="/charge", method="POST", payload={"amount": 1},
        headers={"X-Request-Id": "req-one-trace"},
    )  # fmt: skip
    assert resp.status_code == 200
    spans = sdk.spans()
    assert len({s.context.trace_id for s in spans}) == 1
    chain = sorted(spans, key=lambda s: s.start_time or 0)
    kinds = [(s.kind, s.name) for s in chain]
    assert kinds == [
        (SpanKind.INTERNAL, "POST billing"),
        (SpanKind.CLIENT, "POST"),
        (SpanKind.SERVER, "POST"),
        (SpanKind.INTERNAL, "POST ledger"),
        (SpanKind.CLIENT, "POST"),
        (SpanKind.SERVER, "POST"),
    ]
    for parent, child in zip(chain, chain[1:]):
        assert parent_id(child) == parent.context.span_id, child.name
    assert parent_id(chain[0]) is None
    server_billing, server_ledger = chain[2], chain[5]
    assert attributes(server_billing)["mscomm.caller"] == "orders"
    assert attributes(server_ledger)["mscomm.caller"] == "billing"
    assert attributes(server_billing)["mscomm.request_id"] == "req-one-trace"
    # The request id went on, sealed, to the nested call.
    assert seen == {"billing_request_id": "req-one-trace", "ledger_request_id": "req-one-trace"}
    assert attributes(chain[3])["mscomm.request_id"] == "req-one-trace"
    assert attributes(chain[1])["mscomm.protocol"] == "2"
    assert attributes(chain[1])["mscomm.sealed"] is True


def test_a_request_id_and_a_trace_go_on_without_telemetry_in_the_middle(
    sdk: Sdk, services: Build
) -> None:
    """billing reports nothing, yet its nested call carries orders' request id and trace
    context on, sealed: ledger's server span is in orders' trace."""
    fleet = services("orders", "billing", "ledger")
    seen: dict[str, Any] = {}

    def ledger(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["request_id"] = current_request_id()
        seen["environ"] = environ.get("mscomm.request_id")
        return answer({"ok": True})(environ, start_response)

    fleet.serve("ledger", ledger, telemetry=sdk.telemetry())
    quiet = fleet.client("billing", telemetry=False)

    def billing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inner = quiet.request(target_service="ledger", endpoint="/post", method="POST")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [inner.content]

    fleet.serve("billing", billing, telemetry=False)
    orders = fleet.client("orders", telemetry=sdk.telemetry())
    orders.request(target_service="billing", endpoint="/charge", method="POST", payload={})
    spans = by_name(sdk.spans())
    call = spans["POST billing"][0]
    ledger_server = next(s for s in sdk.spans() if s.kind == SpanKind.SERVER)
    assert ledger_server.context.trace_id == call.context.trace_id
    assert seen["request_id"] == attributes(call)["mscomm.request_id"] == seen["environ"]


def test_a_call_the_breaker_refuses_is_an_error_span_without_attempts(
    sdk: Sdk, services: Build
) -> None:
    """Once the circuit is open, a call is one span with an error status, the breaker's
    state, and no attempt span under it."""
    fleet = services("orders", "billing")
    fleet.registry.register("billing", "http://127.0.0.1:9")  # nothing listens there
    policy = attrs.evolve(CallPolicy(), breaker=BreakerPolicy(failure_threshold=1))
    orders = fleet.client("orders", telemetry=sdk.telemetry(), policy=policy)
    with pytest.raises(ServiceUnavailableError):
        orders.request(target_service="billing", endpoint="/x", method="POST", timeout=5)
    with pytest.raises(CircuitOpenError):
        orders.request(target_service="billing", endpoint="/x", method="POST")
    calls = by_name(sdk.spans())["POST billing"]
    refused = calls[-1]
    assert refused.status.status_code is StatusCode.ERROR
    assert attributes(refused)["error.type"] == "CircuitOpenError"
    assert attributes(refused)["mscomm.breaker.state"] == "open"
    assert attributes(refused)["mscomm.attempts"] == 0
    assert not [s for s in sdk.spans() if parent_id(s) == refused.context.span_id]
    first = calls[0]
    children = [s for s in sdk.spans() if parent_id(s) == first.context.span_id]
    # A refused connection is retried whatever the method: three attempts, each refused.
    assert [attributes(s)["error.type"] for s in children] == ["connection refused"] * 3


def test_retries_and_failovers_are_attempt_spans_with_their_reasons(
    sdk: Sdk, services: Build
) -> None:
    """A GET whose first attempt gets a sealed 503 fails over to the other instance: two
    attempt spans, the second with its kind, reason and resend count."""
    fleet = services("orders", "billing")
    lock, hits = threading.Lock(), []

    def flaky(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            hits.append(1)
            first = len(hits) == 1
        return answer({"n": len(hits)}, "503 Service Unavailable" if first else "200 OK")(
            environ, start_response
        )

    fleet.serve("billing", flaky)
    fleet.serve("billing", flaky)
    orders = fleet.client("orders", telemetry=sdk.telemetry(), sleep=lambda seconds: None)
    resp = orders.request(target_service="billing", endpoint="/item", method="GET")
    assert resp.status_code == 200
    call = by_name(sdk.spans())["GET billing"][0]
    tries = sorted(
        (s for s in sdk.spans() if parent_id(s) == call.context.span_id),
        key=lambda s: attributes(s)["mscomm.attempt"],
    )
    first, second = (attributes(s) for s in tries)
    assert first["mscomm.attempt.kind"] == "first" and first["http.response.status_code"] == 503
    assert tries[0].status.status_code is StatusCode.ERROR
    assert second["mscomm.attempt.kind"] == "failover"
    assert second["mscomm.retry.reason"] == "status 503"
    assert second["http.request.resend_count"] == 1
    assert second["mscomm.instance"] != first["mscomm.instance"]
    assert attributes(call)["mscomm.attempts"] == 2
    assert "?" not in second["url.full"]


def test_the_same_instance_again_is_a_retry(sdk: Sdk, services: Build) -> None:
    """With one instance, the attempt after a sealed 503 is a retry to the same instance."""
    fleet = services("orders", "billing")
    hits: list[int] = []

    def flaky(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        hits.append(1)
        status = "503 Service Unavailable" if len(hits) == 1 else "200 OK"
        return answer({}, status)(environ, start_response)

    fleet.serve("billing", flaky)
    orders = fleet.client("orders", telemetry=sdk.telemetry(), sleep=lambda seconds: None)
    orders.request(target_service="billing", endpoint="/item?secret=card", method="GET")
    tries = [s for s in sdk.spans() if s.kind == SpanKind.CLIENT]
    kinds = sorted(attributes(s)["mscomm.attempt.kind"] for s in tries)
    assert kinds == ["first", "retry"]
    for span in sdk.spans():
        assert not [v for v in attributes(span).values() if "card" in str(v)], span.name


FORGED_TRACE = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


def test_an_outer_traceparent_never_parents_the_server_span(sdk: Sdk, services: Build) -> None:
    """A traceparent added on the path (here by a proxy in front of billing's middleware)
    is not the sealed one: billing's server span stays the child of orders' attempt, in
    orders' trace, and the handler never sees the outer header."""
    fleet = services("orders", "billing")
    seen: dict[str, Any] = {}

    def handler(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["traceparent"] = environ.get("HTTP_TRACEPARENT")
        return answer({"ok": True})(environ, start_response)

    protected = fleet.middleware("billing", handler, telemetry=sdk.telemetry())

    def on_the_path(environ: dict[str, Any], start_response: Any) -> Any:
        environ["HTTP_TRACEPARENT"] = FORGED_TRACE
        environ["HTTP_TRACESTATE"] = "evil=1"
        return protected(environ, start_response)

    from client.servers import WaitressServer

    with WaitressServer(on_the_path) as server:
        fleet.registry.register("billing", server.url)
        orders = fleet.client("orders", telemetry=sdk.telemetry())
        assert orders.request(target_service="billing", endpoint="/x").status_code == 200
    spans = sdk.spans()
    attempt = next(s for s in spans if s.kind == SpanKind.CLIENT)
    server_span = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert server_span.context.trace_id == attempt.context.trace_id != int("ab" * 16, 16)
    assert parent_id(server_span) == attempt.context.span_id
    assert seen["traceparent"] != FORGED_TRACE


def test_a_callers_own_context_headers_are_not_sent_beside_the_seal(
    sdk: Sdk, services: Build
) -> None:
    """A traceparent or deadline the caller passes in ``headers=`` is replaced by the call's
    own, sealed: the server sees orders' trace and the call's deadline, not the passed ones."""
    fleet = services("orders", "billing")
    seen: dict[str, Any] = {}

    def handler(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["traceparent"] = environ.get("HTTP_TRACEPARENT")
        seen["deadline"] = environ.get("HTTP_X_MSCOMM_DEADLINE")
        return answer({"ok": True})(environ, start_response)

    fleet.serve("billing", handler, telemetry=sdk.telemetry())
    orders = fleet.client("orders", telemetry=sdk.telemetry())
    orders.request(
        target_service="billing", endpoint="/x",
        headers={"traceparent": FORGED_TRACE, "X-Mscomm-Deadline": "999999"},
    )  # fmt: skip
    attempt = next(s for s in sdk.spans() if s.kind == SpanKind.CLIENT)
    assert seen["traceparent"] is not None and FORGED_TRACE not in seen["traceparent"]
    assert f"{attempt.context.trace_id:032x}" in seen["traceparent"]
    assert seen["deadline"] != "999999"
