"""Every use of the OpenTelemetry API, in one module imported only when telemetry asks for it.

Only the API is used (``opentelemetry-api``); which SDK, sampler and
exporters run is the application's choice. Trace context is read and
written with the W3C Trace Context propagator itself, not the globally
configured one: what travels inside the seal is always ``traceparent`` and
``tracestate``.

The instruments are named and described in :data:`METRICS` (the list
``docs/observing.md`` shows).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["DURATION_BUCKETS", "METRICS", "Metric", "Otel"]

#: Histogram buckets in seconds (the HTTP semantic conventions' advice).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class Metric(NamedTuple):
    """One instrument: its name, kind, unit, description and attributes."""

    name: str
    kind: str
    unit: str
    description: str
    attributes: tuple[str, ...]


METRICS = (
    Metric("mscomm.client.call.duration", "histogram", "s",
           "Duration of calls, from planning to the answer or error, retries included.",
           ("mscomm.target", "http.request.method", "http.response.status_code", "error.type")),
    Metric("mscomm.client.attempts", "counter", "{attempt}",
           "Attempts sent, by kind: the first, a retry to the same instance, a failover.",
           ("mscomm.target", "mscomm.attempt.kind", "mscomm.retry.reason")),
    Metric("http.client.request.duration", "histogram", "s",
           "Duration of each attempt (one HTTP request), per the HTTP semantic conventions.",
           ("http.request.method", "server.address", "server.port", "url.scheme",
            "http.response.status_code", "error.type")),
    Metric("mscomm.client.breaker.transitions", "counter", "{transition}",
           "Circuit breaker state changes.",
           ("mscomm.target", "mscomm.breaker.from", "mscomm.breaker.to")),
    Metric("mscomm.server.request.duration", "histogram", "s",
           "Duration of requests through the middleware, refusals included.",
           ("http.request.method", "http.response.status_code", "mscomm.caller",
            "mscomm.protocol", "mscomm.sealed")),
    Metric("mscomm.server.refusals", "counter", "{request}",
           "Requests the middleware refused or did not run, by status and reason.",
           ("http.response.status_code", "mscomm.reason")),
    Metric("mscomm.replay.errors", "counter", "{error}",
           "Replay-store failures (every one refuses a sealed request).",
           ("mscomm.store", "mscomm.reason")),
    Metric("mscomm.registry.errors", "counter", "{error}",
           "Registry reads that failed while the last good data was kept.",
           ("mscomm.registry", "mscomm.reason")),
    Metric("mscomm.health.probes", "counter", "{probe}",
           "Health probes, by result.",
           ("mscomm.target", "mscomm.result")),
    Metric("mscomm.health.verdicts", "counter", "{change}",
           "Instances judged unhealthy, or healthy again.",
           ("mscomm.target", "mscomm.verdict")),
)  # fmt: skip

_KINDS = {"client": SpanKind.CLIENT, "server": SpanKind.SERVER, "internal": SpanKind.INTERNAL}
_INSTRUMENTS = {
    "mscomm.client.call.duration": "call_duration",
    "mscomm.client.attempts": "attempts",
    "http.client.request.duration": "attempt_duration",
    "mscomm.client.breaker.transitions": "breaker_transitions",
    "mscomm.server.request.duration": "request_duration",
    "mscomm.server.refusals": "refusals",
    "mscomm.replay.errors": "replay_errors",
    "mscomm.registry.errors": "registry_errors",
    "mscomm.health.probes": "health_probes",
    "mscomm.health.verdicts": "health_verdicts",
}


class Otel:
    """A tracer, the W3C propagator and the instruments of one :class:`~.options.Telemetry`.

    Args:
        tracer_provider: the provider to trace with, or ``None`` for the global one.
        meter_provider: the provider to measure with, or ``None`` for the global one.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("mscomm_sync", tracer_provider=tracer_provider)
        self.propagator = TraceContextTextMapPropagator()
        meter = metrics.get_meter("mscomm_sync", meter_provider=meter_provider)
        for metric in METRICS:
            if metric.kind == "histogram":
                made: Any = meter.create_histogram(
                    metric.name,
                    unit=metric.unit,
                    description=metric.description,
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
            else:
                made = meter.create_counter(
                    metric.name, unit=metric.unit, description=metric.description
                )
            setattr(self, _INSTRUMENTS[metric.name], made)

    # -- spans ---------------------------------------------------------------

    def start(
        self,
        name: str,
        kind: str,
        parent: Any,
        attributes: dict[str, Any],
        start_time: Optional[int] = None,
    ) -> Any:
        """Start a span; ``parent`` is a context (``None``: the current one)."""
        return self.tracer.start_span(
            name,
            context=parent,
            kind=_KINDS[kind],
            attributes=attributes,
            start_time=start_time,
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def attach(span: Any) -> object:
        """Make ``span`` current; return the token :meth:`detach` takes."""
        return otel_context.attach(trace.set_span_in_context(span))

    @staticmethod
    def context_of(span: Any) -> Any:
        """Return a context whose current span is ``span`` (a parent for its children)."""
        return trace.set_span_in_context(span)

    @staticmethod
    def detach(token: Any) -> None:
        otel_context.detach(token)

    @staticmethod
    def current_is_valid() -> bool:
        """Whether a valid span is current (a trace this process already takes part in)."""
        return bool(trace.get_current_span().get_span_context().is_valid)

    def parent_from(self, traceparent: Optional[str], tracestate: Optional[str]) -> Any:
        """Return a context whose parent is the remote span ``traceparent`` names, or ``None``."""
        if traceparent is None:
            return None
        carrier = {"traceparent": traceparent}
        if tracestate:
            carrier["tracestate"] = tracestate
        return self.propagator.extract(carrier)

    def inject(self, span: Any) -> tuple[Optional[str], Optional[str]]:
        """Return the ``traceparent`` and ``tracestate`` naming ``span`` (``None``: invalid)."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get("traceparent"), carrier.get("tracestate")

    @staticmethod
    def trace_id(span: Any) -> str:
        """Return ``span``'s trace id as 32 hex digits (all zeros if it has none)."""
        return f"{span.get_span_context().trace_id:032x}"

    @staticmethod
    def fail(span: Any, error_type: str, description: str = "") -> None:
        """Mark ``span`` failed: ``error.type`` and an error status."""
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, description or error_type))
