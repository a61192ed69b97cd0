"""Telemetry: the call's context across hops, OpenTelemetry traces and metrics, access logs.

* :mod:`.context`: what travels with a call inside the seal (the request id,
  the remaining deadline, the trace context), and what a handler reads of it
  (:func:`current_deadline`, :func:`current_request_id`);
* :mod:`.options`: :class:`Telemetry`, the frozen settings;
* :mod:`.process`: the process's default settings (:func:`initialize_telemetry`);
* :mod:`.instruments`: the runtime built from the settings, and the one
  place that decides whether OpenTelemetry is imported at all;
* :mod:`.otel`: every use of the OpenTelemetry API (imported only when enabled);
* :mod:`.calls`, :mod:`.serving`: one call's and one request's records
  (spans, metrics, access log lines);
* :mod:`.access`: the access loggers.

Importing this package imports nothing of OpenTelemetry.
"""

from .context import RequestDeadline, current_deadline, current_request_id
from .options import Telemetry
from .process import initialize_telemetry, reset_telemetry

__all__ = [
    "RequestDeadline",
    "Telemetry",
    "current_deadline",
    "current_request_id",
    "initialize_telemetry",
    "reset_telemetry",
]
