"""A call's context across hops: request id, remaining deadline and trace context, sealed.

Trust model: these values steer what a service does (how long it works for a
request, which trace it joins, what its logs say), so they are believed only
when they came inside a verified protocol v2 seal. The client writes them
into the sealed header fields (:func:`outbound_headers`); the middleware
reads them back from the opened request only (:func:`inbound_context`), never
from the outer headers, which anyone on the path can write. Protocol v1 has
no sealed headers, so a v1 call carries no context at all: a v1 peer gets
neither the trace context nor the deadline, and a request id it sees is the
caller's own (fresh or given), never one inherited from the request being
served.

The deadline travels as a relative budget in whole milliseconds, as gRPC's
``grpc-timeout`` does, since the two hosts' clocks differ; the receiver
turns it back into a time on its own monotonic clock from the moment the
request arrived.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Callable, Optional

import attrs

__all__ = [
    "CONTEXT_HEADERS",
    "HEADER_DEADLINE",
    "HEADER_DEADLINE_SPENT",
    "RequestContext",
    "RequestDeadline",
    "Serving",
    "budget_value",
    "current_context",
    "current_deadline",
    "current_request_id",
    "inbound_context",
    "outbound_headers",
]

#: The sealed request header that carries the caller's remaining budget, in milliseconds.
HEADER_DEADLINE = "X-Mscomm-Deadline"
#: The sealed answer header that marks "your deadline was spent when this arrived: not run".
HEADER_DEADLINE_SPENT = "X-Mscomm-Deadline-Spent"
#: Sealed request headers the client writes itself (lower case): any of these
#: a caller passes, or another instrumentation adds, is dropped.
CONTEXT_HEADERS = frozenset({"traceparent", "tracestate", HEADER_DEADLINE.lower()})

_DEADLINE_NAME = HEADER_DEADLINE.lower()
_MILLIS = re.compile(r"[0-9]{1,10}\Z")
#: W3C Trace Context, version 00: trace id and parent id not all zeros.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}\Z")
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}\Z")
_MAX_TRACESTATE = 512


@attrs.frozen
class RequestDeadline:
    """When the caller of the request being served needs its answer, on this host's clock.

    Attributes:
        at: the time, on ``clock`` (``time.monotonic``), the caller gives up.
        budget: the seconds the caller granted when it sent the request.
        clock: the monotonic clock ``at`` is read on.
    """

    at: float
    budget: float
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)

    def remaining(self) -> float:
        """Return the seconds left (zero or less once it has passed)."""
        return self.at - self.clock()

    def expired(self) -> bool:
        """Return whether the caller has already given up."""
        return self.clock() >= self.at

    def __repr__(self) -> str:
        return f"<RequestDeadline budget={self.budget:.3f}s remaining={self.remaining():.3f}s>"


@attrs.frozen
class RequestContext:
    """What a verified v2 request carried of its call's context.

    Attributes:
        request_id: the caller's ``X-Request-Id``, or ``None``.
        deadline: the caller's deadline, or ``None`` if it sent none.
        traceparent: the W3C ``traceparent`` it sent, or ``None``.
        tracestate: the W3C ``tracestate`` it sent, or ``None``.
    """

    request_id: Optional[str] = None
    deadline: Optional[RequestDeadline] = None
    traceparent: Optional[str] = None
    tracestate: Optional[str] = None


_current: contextvars.ContextVar[Optional[RequestContext]] = contextvars.ContextVar(
    "mscomm_request_context", default=None
)


def current_context() -> Optional[RequestContext]:
    """Return the context of the request this code is serving, or ``None``."""
    return _current.get()


def current_deadline() -> Optional[RequestDeadline]:
    """Return the deadline of the sealed request being served, or ``None``.

    Set by :class:`~mscomm_sync.wsgi.EncryptionMiddleware` for as long as the
    app handles a verified protocol v2 request whose caller sent one (also in
    ``environ["mscomm.deadline"]``). A :class:`~mscomm_sync.MicroServiceClient`
    call made meanwhile uses the smaller of its own timeout and what is left.
    """
    context = _current.get()
    return None if context is None else context.deadline


def current_request_id() -> Optional[str]:
    """Return the ``X-Request-Id`` of the sealed request being served, or ``None``.

    Set, like :func:`current_deadline`, for a verified v2 request that
    carried one (also in ``environ["mscomm.request_id"]``); a client call made
    meanwhile carries it on, sealed, unless it is given one of its own.
    """
    context = _current.get()
    return None if context is None else context.request_id


class Serving:
    """``with Serving(context):`` makes ``context`` current for the code inside (thread-safe)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: Optional[RequestContext]) -> None:
        self._context = context
        self._token: Optional[contextvars.Token[Optional[RequestContext]]] = None

    def __enter__(self) -> None:
        self._token = _current.set(self._context)

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def inbound_context(
    headers: Iterable[tuple[str, str]],
    arrived: float,
    clock: Callable[[], float] = time.monotonic,
) -> Optional[RequestContext]:
    """Return the context carried by a verified request's sealed headers, or ``None``.

    A value that is not well formed is ignored (as if it had not been sent).

    Args:
        headers: the opened request's sealed header fields (names lower case).
        arrived: when the request arrived, on ``clock``: the deadline counts from then.
        clock: the monotonic clock.
    """
    request_id = deadline = traceparent = tracestate = None
    for name, value in headers:
        if name == "x-request-id":
            if request_id is None and _REQUEST_ID.match(value):
                request_id = value
        elif name == _DEADLINE_NAME:
            if deadline is None and _MILLIS.match(value):
                budget = int(value) / 1000.0
                deadline = RequestDeadline(at=arrived + budget, budget=budget, clock=clock)
        elif name == "traceparent":
            if traceparent is None and _TRACEPARENT.match(value):
                traceparent = value
        elif name == "tracestate" and tracestate is None and len(value) <= _MAX_TRACESTATE:
            tracestate = value
    if request_id is None and deadline is None and traceparent is None:
        return None
    return RequestContext(
        request_id=request_id,
        deadline=deadline,
        traceparent=traceparent,
        tracestate=tracestate if traceparent is not None else None,
    )


def budget_value(seconds: float) -> str:
    """Return a budget of ``seconds`` as the header's whole milliseconds (never negative)."""
    return str(max(0, int(seconds * 1000.0)))


def outbound_headers(
    *,
    request_id: Optional[str],
    budget: float,
    traceparent: Optional[str],
    tracestate: Optional[str],
) -> tuple[tuple[str, str], ...]:
    """Return the context fields one attempt seals beside the caller's own headers.

    Args:
        request_id: the call's request id when it is not already among the
            call's headers (an inherited one), else ``None``.
        budget: the seconds this attempt's answer is waited for.
        traceparent: the W3C ``traceparent`` to send, or ``None``.
        tracestate: the W3C ``tracestate`` to send with it, or ``None``.
    """
    fields = [(_DEADLINE_NAME, budget_value(budget))]
    if request_id is not None:
        fields.append(("x-request-id", request_id))
    if traceparent is not None:
        fields.append(("traceparent", traceparent))
        if tracestate:
            fields.append(("tracestate", tracestate))
    return tuple(fields)
