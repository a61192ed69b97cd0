"""The context fields: what a sealed request's headers give the middleware, and what an
attempt seals."""

from __future__ import annotations

import pytest

from mscomm_sync.telemetry.context import (
    RequestContext,
    RequestDeadline,
    Serving,
    budget_value,
    current_context,
    current_deadline,
    current_request_id,
    inbound_context,
    outbound_headers,
)

TRACE = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_counts_from_arrival_on_this_hosts_clock() -> None:
    """1500 ms granted on arrival at 100 s is a deadline at 101.5 s, spent once that passes."""
    clock = Clock()
    context = inbound_context([("x-mscomm-deadline", "1500")], arrived=100.0, clock=clock)
    assert context is not None and context.deadline is not None
    assert (context.deadline.at, context.deadline.budget) == (101.5, 1.5)
    assert not context.deadline.expired()
    clock.now = 101.5
    assert context.deadline.expired() and context.deadline.remaining() == 0


@pytest.mark.parametrize(
    "value", ["-1", "1.5", "", " 10", "1e3", "12345678901", "0x10", "\uff11\uff10"]
)
def test_a_malformed_budget_is_no_deadline(value: str) -> None:
    """Only 1 to 10 ASCII digits are a budget; anything else is ignored."""
    assert inbound_context([("x-mscomm-deadline", value)], arrived=0.0) is None


def test_the_trace_context_and_request_id_are_read_when_well_formed() -> None:
    """A valid traceparent, its tracestate and a sane request id are kept; the first wins."""
    context = inbound_context(
        [("x-request-id", "r-1"), ("traceparent", TRACE), ("tracestate", "a=1"),
         ("x-request-id", "r-2")],
        arrived=0.0,
    )  # fmt: skip
    assert context == RequestContext(request_id="r-1", traceparent=TRACE, tracestate="a=1")


@pytest.mark.parametrize(
    "value",
    ["01-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "00-" + "0" * 32 + "-" + "cd" * 8 + "-01",
     "00-" + "ab" * 16 + "-" + "0" * 16 + "-01", TRACE.upper(), TRACE + "-x"],
)  # fmt: skip
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    """Another version, all-zero ids, upper case or extra parts: not a trace context (and
    its tracestate goes with it)."""
    assert inbound_context([("traceparent", value), ("tracestate", "a=1")], 0.0) is None


def test_a_request_id_with_spaces_is_ignored() -> None:
    """A request id must be 1 to 128 visible ASCII characters."""
    assert inbound_context([("x-request-id", "a b")], 0.0) is None
    assert inbound_context([("x-request-id", "x" * 129)], 0.0) is None


def test_an_attempt_seals_its_budget_in_whole_milliseconds() -> None:
    """The budget is rounded down to whole milliseconds and never negative; the request id
    and trace context are added only when given."""
    assert (
        budget_value(0.0009) == "0" and budget_value(-3) == "0" and budget_value(1.2345) == "1234"
    )
    assert outbound_headers(request_id=None, budget=2.5, traceparent=None, tracestate=None) == (
        ("x-mscomm-deadline", "2500"),
    )
    assert outbound_headers(request_id="r", budget=1, traceparent=TRACE, tracestate="a=1") == (
        ("x-mscomm-deadline", "1000"), ("x-request-id", "r"), ("traceparent", TRACE),
        ("tracestate", "a=1"),
    )  # fmt: skip


def test_serving_sets_the_context_for_the_block_only() -> None:
    """current_deadline() and current_request_id() answer inside Serving, None outside,
    and nested blocks restore the outer one."""
    outer = RequestContext(request_id="outer", deadline=RequestDeadline(at=1e9, budget=5.0))
    inner = RequestContext(request_id="inner")
    assert current_context() is None
    with Serving(outer):
        assert current_request_id() == "outer" and current_deadline() is outer.deadline
        with Serving(inner):
            assert current_request_id() == "inner" and current_deadline() is None
        assert current_request_id() == "outer"
    assert current_context() is None and current_deadline() is None


def test_a_request_without_context_is_served_with_none_even_inside_another() -> None:
    """A request that brought no context (every v1 request) runs with none current, also when
    it is served inside another request's block (an app calling a wrapped app in-process);
    with nothing current already, nothing is set or undone."""
    from mscomm_sync.telemetry.serving import NO_REQUEST

    outer = RequestContext(request_id="outer")
    with NO_REQUEST.serving(None):
        assert current_context() is None
    with Serving(outer):
        with NO_REQUEST.serving(None):
            assert current_context() is None
        assert current_context() is outer
    with NO_REQUEST.serving(outer):
        assert current_context() is outer
    assert current_context() is None
