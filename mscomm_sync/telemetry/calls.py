"""One client call as telemetry sees it: a span, its attempts' spans, metrics, an access line.

The client's hub (``ServiceAdapter.send``) opens a :class:`CallRecord` around
the whole call, breaker included, and the attempt loop opens an
:class:`AttemptRecord` around each attempt. Spans follow the HTTP client
semantic conventions: the call is an ``INTERNAL`` span named
``"<METHOD> <service>"``, each attempt a ``CLIENT`` span named after the
method, with ``http.request.resend_count`` on retries; our own attributes
are ``mscomm.*``. A call the breaker refuses has an error status and no
attempt. URLs are recorded without their query, which may carry data.

Each attempt also writes the context fields it seals (:meth:`AttemptRecord.context_headers`):
its own span as the ``traceparent`` when tracing, else the one the request
being served brought, passed on unchanged.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit

from .._fast import itself, nothing
from ..errors import MscommError
from .access import log_call
from .context import current_context, outbound_headers

if TYPE_CHECKING:
    from .instruments import Instruments

__all__ = ["NO_ATTEMPT", "NO_CALL", "AttemptRecord", "CallRecord", "start_call"]


def start_call(
    instruments: Instruments,
    *,
    service: str,
    target: str,
    method: str,
    path: str,
    request_id: str,
    clock: Callable[[], float] = time.monotonic,
) -> CallRecord:
    """Return the record of one call (:data:`NO_CALL` when nothing is reported).

    Args:
        instruments: what reports it.
        service: the calling service.
        target: the service called.
        method: the HTTP method.
        path: the endpoint's canonical target (its query is never recorded).
        request_id: the call's request id.
        clock: the client's monotonic clock (durations).
    """
    if not instruments.active:
        return NO_CALL
    return CallRecord(instruments, service, target, method, path, request_id, clock)


class AttemptRecord:
    """One attempt: a ``CLIENT`` span and an ``http.client.request.duration`` measure.

    ``with attempt:`` makes its span current for the attempt; it ends when
    the block does, failed if an exception leaves it.
    """

    __slots__ = ("_call", "_span", "_started", "_token", "instance", "kind", "number",
                 "reason", "sealed", "status", "version")  # fmt: skip

    def __init__(
        self, call: Optional[CallRecord], instance: str, number: int, kind: str, reason: str
    ) -> None:
        self._call = call
        self.instance = instance
        self.number = number
        self.kind = kind
        self.reason = reason
        self.version: Optional[str] = None
        self.sealed: Optional[bool] = None
        self.status: Optional[int] = None
        self._span: Any = None
        self._token: Any = None
        self._started = 0.0

    def context_headers(
        self, request_id: Optional[str], budget: float
    ) -> tuple[tuple[str, str], ...]:
        """Return the context fields to seal into this attempt.

        Args:
            request_id: the call's id if it is not among its own headers
                (inherited from the request being served), else ``None``.
            budget: the seconds this attempt's answer is waited for.
        """
        traceparent = tracestate = None
        call = self._call
        if self._span is not None and call is not None and call.otel is not None:
            traceparent, tracestate = call.otel.inject(self._span)
        if traceparent is None:
            inherited = current_context()  # not tracing here: pass the caller's on as it came
            if inherited is not None:
                traceparent, tracestate = inherited.traceparent, inherited.tracestate
        return outbound_headers(
            request_id=request_id, budget=budget, traceparent=traceparent, tracestate=tracestate
        )

    def sealed_with(self, version: str) -> None:
        """Note the protocol version the attempt was sealed with."""
        self.version = version

    def answered(self, status: int, sealed: bool) -> None:
        """Note the answer's status and whether it came sealed."""
        self.status = status
        self.sealed = sealed

    def __enter__(self) -> AttemptRecord:
        call = self._call
        if call is None or call.otel is None:
            return self
        otel = call.otel
        self._started = call.clock()
        parts = urlsplit(self.instance)
        attributes: dict[str, Any] = {
            "http.request.method": call.method,
            "url.full": self.instance.rstrip("/") + call.path,
            "url.scheme": parts.scheme,
            "server.address": parts.hostname or "",
            "mscomm.target": call.target,
            "mscomm.instance": self.instance,
            "mscomm.attempt": self.number,
            "mscomm.attempt.kind": self.kind,
        }
        if parts.port is not None:
            attributes["server.port"] = parts.port
        if self.number > 1:
            attributes["http.request.resend_count"] = self.number - 1
            attributes["mscomm.retry.reason"] = self.reason
        self._span = otel.start(call.method, "client", call.span_context(), attributes)
        self._token = otel.attach(self._span)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        call = self._call
        span = self._span
        if call is None or call.otel is None or span is None:
            return
        otel = call.otel
        self._span = None
        try:
            otel.detach(self._token)
            error = _error_type(exc) if exc is not None else None
            if self.status is not None:
                span.set_attribute("http.response.status_code", self.status)
            if self.version is not None:
                span.set_attribute("mscomm.protocol", self.version)
            if self.sealed is not None:
                span.set_attribute("mscomm.sealed", self.sealed)
            if error is not None:
                otel.fail(span, error, _describe(exc))
            elif self.status is not None and self.status >= 400:
                otel.fail(span, str(self.status))
            span.end()
            parts = urlsplit(self.instance)
            attributes: dict[str, Any] = {
                "http.request.method": call.method,
                "server.address": parts.hostname or "",
                "url.scheme": parts.scheme,
            }
            if parts.port is not None:
                attributes["server.port"] = parts.port
            if self.status is not None:
                attributes["http.response.status_code"] = self.status
            if error is not None:
                attributes["error.type"] = error
            otel.attempt_duration.record(  # type: ignore[attr-defined]
                max(call.clock() - self._started, 0.0), attributes
            )
        except Exception:
            call.broken("attempt")


class _NoAttempt(AttemptRecord):
    """The attempt record when nothing is traced: it only writes the context fields."""

    __slots__ = ()

    __enter__ = itself
    __exit__ = sealed_with = answered = nothing


#: The shared record of an attempt that nothing traces.
NO_ATTEMPT: AttemptRecord = _NoAttempt(None, "", 0, "first", "")


class CallRecord:
    """One call: an ``INTERNAL`` span, a ``mscomm.client.call.duration`` measure, an access line.

    ``with record:`` spans the call; an exception leaving the block is its
    outcome (its type is the ``error.type``), else the status given to
    :meth:`answered`.
    """

    __slots__ = ("_instruments", "_started", "_token", "attempts", "breaker_state", "clock",
                 "instance", "method", "otel", "path", "request_id", "service", "span",
                 "status", "target")  # fmt: skip

    def __init__(
        self,
        instruments: Optional[Instruments],
        service: str,
        target: str,
        method: str,
        path: str,
        request_id: str,
        clock: Callable[[], float],
    ) -> None:
        self._instruments = instruments
        self.otel = None if instruments is None else instruments.otel
        self.service = service
        self.target = target
        self.method = method
        self.path = path.split("?", 1)[0]
        self.request_id = request_id
        self.clock = clock
        self.attempts = 0
        self.status: Optional[int] = None
        self.instance: Optional[str] = None
        self.breaker_state: Optional[str] = None
        self.span: Any = None
        self._token: Any = None
        self._started = 0.0

    def span_context(self) -> Any:
        """Return the context whose current span is this call's (the attempts' parent)."""
        otel = self.otel
        if otel is None or self.span is None:
            return None
        return otel.context_of(self.span)

    def breaker(self, state: str) -> None:
        """Note the breaker's state as the call asked it."""
        self.breaker_state = state
        if self.span is not None:
            self.span.set_attribute("mscomm.breaker.state", state)

    def attempt(self, instance: str, number: int, kind: str, reason: str) -> AttemptRecord:
        """Return the record of the call's next attempt.

        Args:
            instance: the instance's URL.
            number: the attempt's number (1 for the first).
            kind: ``first``, ``retry`` (the same instance) or ``failover``.
            reason: why the attempt before failed (``""`` for the first).
        """
        self.attempts = number
        self.instance = instance
        otel = self.otel
        if otel is not None:
            try:
                counted = {"mscomm.target": self.target, "mscomm.attempt.kind": kind}
                if reason:
                    counted["mscomm.retry.reason"] = reason
                otel.attempts.add(1, counted)  # type: ignore[attr-defined]
            except Exception:
                self.broken("attempts")
            return AttemptRecord(self, instance, number, kind, reason)
        return NO_ATTEMPT

    def answered(self, status: int) -> None:
        """Note the status the call returns."""
        self.status = status

    def __enter__(self) -> CallRecord:
        self._started = self.clock()
        otel = self.otel
        if otel is None:
            return self
        try:
            parent = None
            if not otel.current_is_valid():
                inherited = current_context()  # a trace the request being served brought
                if inherited is not None:
                    parent = otel.parent_from(inherited.traceparent, inherited.tracestate)
            self.span = otel.start(
                f"{self.method} {self.target}",
                "internal",
                parent,
                {
                    "http.request.method": self.method,
                    "mscomm.service": self.service,
                    "mscomm.target": self.target,
                    "mscomm.request_id": self.request_id,
                    "url.path": self.path,
                },
            )
            self._token = otel.attach(self.span)
        except Exception:
            self.span = None
            self.broken("call")
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        duration = max(self.clock() - self._started, 0.0)
        error = _error_type(exc) if exc is not None else None
        otel = self.otel
        if otel is not None:
            try:
                self._end_span(otel, error, exc)
                measured: dict[str, Any] = {
                    "mscomm.target": self.target,
                    "http.request.method": self.method,
                }
                if self.status is not None:
                    measured["http.response.status_code"] = self.status
                if error is not None:
                    measured["error.type"] = error
                otel.call_duration.record(duration, measured)  # type: ignore[attr-defined]
            except Exception:
                self.broken("call")
        if self._instruments is not None and self._instruments.access_log:
            log_call(
                service=self.service,
                target=self.target,
                method=self.method,
                path=self.path,
                outcome=error if error is not None else str(self.status),
                status=self.status,
                duration=duration,
                attempts=self.attempts,
                instance=self.instance,
                request_id=self.request_id,
            )

    def _end_span(self, otel: Any, error: Optional[str], exc: Optional[BaseException]) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        otel.detach(self._token)
        span.set_attribute("mscomm.attempts", self.attempts)
        if self.status is not None:
            span.set_attribute("http.response.status_code", self.status)
        if error is not None:
            otel.fail(span, error, _describe(exc))
        elif self.status is not None and self.status >= 400:
            otel.fail(span, str(self.status))
        span.end()

    def broken(self, what: str) -> None:
        """Report that recording failed (an SDK or exporter error), and carry on."""
        from .instruments import log

        log.exception(
            "telemetry: recording the %s failed (service=%s)", what, self.target,
            extra={"mscomm.event": "telemetry error", "mscomm.target": self.target},
        )  # fmt: skip


class _NoCall(CallRecord):
    """The call record when nothing is reported: every method does nothing."""

    __slots__ = ()

    __enter__ = itself
    __exit__ = breaker = answered = nothing

    def attempt(self, instance: str, number: int, kind: str, reason: str) -> AttemptRecord:
        return NO_ATTEMPT


#: The shared record of a call that nothing reports.
NO_CALL: CallRecord = _NoCall(None, "", "", "", "", "", time.monotonic)


def _error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: a transport failure's reason, else its class name."""
    reason = getattr(exc, "reason", None)
    if type(exc).__name__ == "AttemptFailed" and isinstance(reason, str):
        return reason
    return type(exc).__name__


def _describe(exc: Optional[BaseException]) -> str:
    # Our errors' messages name services and statuses, never data or keys;
    # a foreign one's (a URL with its query, say) is not recorded.
    if isinstance(exc, MscommError):
        return f"{type(exc).__name__}: {exc}"[:256]
    return type(exc).__name__ if exc is not None else ""
