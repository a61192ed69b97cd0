"""One request through the middleware as telemetry sees it: a server span, metrics, an access line.

The middleware's hub opens a :class:`RequestRecord` for every request,
refusals included. Once a sealed request verified, the record starts a
``SERVER`` span whose parent is the trace context that came **inside the
seal** (an outer ``traceparent`` is never believed), back-dated to when the
request arrived, and makes it current while the app runs, together with the
request's context (:class:`~.context.Serving`). A framework's own
OpenTelemetry instrumentation inside the middleware then sees that span as
current and records its own under it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .._fast import nothing
from .access import log_request
from .context import RequestContext, Serving, current_context

if TYPE_CHECKING:
    from .instruments import Instruments

__all__ = ["NO_REQUEST", "RequestRecord", "start_request"]

StartResponse = Callable[..., Callable[[bytes], object]]


#: Returns a request's route and request id, both made safe to log.
Describe = Callable[[Mapping[str, Any]], tuple[str, Optional[str]]]


def start_request(instruments: Instruments, service: str, describe: Describe) -> RequestRecord:
    """Return the record of one request (:data:`NO_REQUEST` when nothing is reported).

    Args:
        instruments: what reports it.
        service: the serving service.
        describe: returns the request's route and request id, safe to log
            (the middleware's own, which bounds and sanitises them).
    """
    if not instruments.active:
        return NO_REQUEST
    return RequestRecord(instruments, service, describe)


class _Scope:
    """The request's context, and its span, current while the app runs."""

    __slots__ = ("_otel", "_serving", "_span", "_token")

    def __init__(self, context: Optional[RequestContext], otel: Any, span: Any) -> None:
        self._serving = Serving(context)
        self._otel = otel
        self._span = span
        self._token: Any = None

    def __enter__(self) -> None:
        self._serving.__enter__()
        if self._span is not None:
            self._token = self._otel.attach(self._span)

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._token is not None:
            self._otel.detach(self._token)
            self._token = None
        self._serving.__exit__(exc_type, exc, tb)


class _Unchanged:
    """The scope of a request with no context or span to make current: nothing to do."""

    __slots__ = ()

    __enter__ = __exit__ = nothing


_UNCHANGED = _Unchanged()


class RequestRecord:
    """One request: its status, duration, refusal reason and (once verified) its span."""

    __slots__ = ("_describe", "_instruments", "_started", "_started_ns", "otel", "reason",
                 "service", "span", "status")  # fmt: skip

    def __init__(
        self, instruments: Optional[Instruments], service: str, describe: Describe
    ) -> None:
        self._instruments = instruments
        self._describe = describe
        self.otel = None if instruments is None else instruments.otel
        self.service = service
        self.status: Optional[int] = None
        self.reason: Optional[str] = None
        self.span: Any = None
        self._started = time.monotonic()
        self._started_ns = time.time_ns() if self.otel is not None else 0

    def watch(self, start_response: StartResponse) -> StartResponse:
        """Return ``start_response`` noting the status the middleware sends."""

        def watched(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
            code = status[:3]
            self.status = int(code) if code.isdigit() else None
            return start_response(status, headers, exc_info)

        return watched

    def refused(self, status: int, reason: str) -> None:
        """Count a request the middleware refused (or did not run), by status and reason."""
        self.reason = reason
        otel = self.otel
        if otel is not None:
            try:
                otel.refusals.add(  # type: ignore[attr-defined]
                    1, {"http.response.status_code": status, "mscomm.reason": reason}
                )
            except Exception:
                _broken("refusal", self.service)

    def verified(self, environ: Mapping[str, Any], context: Optional[RequestContext]) -> None:
        """Start the server span of a verified request, as a child of the sealed trace context."""
        otel = self.otel
        if otel is None:
            return
        try:
            parent = (
                None
                if context is None
                else otel.parent_from(context.traceparent, context.tracestate)
            )
            method = str(environ.get("REQUEST_METHOD", ""))
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "url.path": str(environ.get("PATH_INFO", ""))[:256],
                "url.scheme": str(environ.get("wsgi.url_scheme", "http")),
                "mscomm.service": self.service,
                "mscomm.caller": str(environ.get("mscomm.caller", "")),
                "mscomm.protocol": str(environ.get("mscomm.protocol", "")),
            }
            if context is not None and context.request_id is not None:
                attributes["mscomm.request_id"] = context.request_id
            if context is not None and context.deadline is not None:
                attributes["mscomm.deadline.budget"] = context.deadline.budget
            self.span = otel.start(method, "server", parent, attributes, self._started_ns)
        except Exception:
            self.span = None
            _broken("span", self.service)

    def serving(self, context: Optional[RequestContext]) -> Union[_Scope, _Unchanged]:
        """Return ``with record.serving(context):``: the context and the span current."""
        if context is None and self.span is None and current_context() is None:
            return _UNCHANGED  # nothing to make current, nothing to undo (every v1 request)
        return _Scope(context, self.otel, self.span)

    def finish(self, environ: Mapping[str, Any]) -> None:
        """End the request: its span, its duration measure and its access line."""
        duration = time.monotonic() - self._started
        status = self.status
        caller = environ.get("mscomm.caller")
        protocol = environ.get("mscomm.protocol")
        otel = self.otel
        if otel is not None:
            try:
                span, self.span = self.span, None
                if span is not None:
                    if status is not None:
                        span.set_attribute("http.response.status_code", status)
                    if status is None or status >= 500:
                        otel.fail(span, str(status) if status is not None else "no answer")
                    span.end()
                measured: dict[str, Any] = {
                    "http.request.method": str(environ.get("REQUEST_METHOD", "")),
                    "mscomm.sealed": caller is not None,
                }
                if status is not None:
                    measured["http.response.status_code"] = status
                if caller is not None:
                    measured["mscomm.caller"] = str(caller)
                if protocol is not None:
                    measured["mscomm.protocol"] = str(protocol)
                otel.request_duration.record(duration, measured)  # type: ignore[attr-defined]
            except Exception:
                _broken("request", self.service)
        if self._instruments is not None and self._instruments.access_log:
            route, request_id = self._describe(environ)
            log_request(
                service=self.service,
                method=_text(environ.get("REQUEST_METHOD")),
                route=route,
                status=status,
                duration=duration,
                caller=_text(caller),
                protocol=_text(protocol),
                request_id=request_id,
            )


class _NoRequest(RequestRecord):
    """The request record when nothing is reported: it only sets the request's context."""

    __slots__ = ()

    def watch(self, start_response: StartResponse) -> StartResponse:
        return start_response

    refused = verified = finish = nothing


#: The shared record of a request that nothing reports.
NO_REQUEST: RequestRecord = _NoRequest(None, "", lambda environ: ("", None))


def _broken(what: str, service: str) -> None:
    from .instruments import log

    log.exception(
        "telemetry: recording the %s failed (service=%s)", what, service,
        extra={"mscomm.event": "telemetry error", "mscomm.service": service},
    )  # fmt: skip


def _text(value: object) -> Optional[str]:
    if value is None:
        return None
    text = str(value)
    return text[:128] if text.isprintable() else repr(text[:64])
