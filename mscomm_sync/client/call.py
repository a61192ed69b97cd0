"""One call's fixed facts, worked out once before its first attempt.

A :class:`Call` is what every attempt of a call shares: the target service,
the plaintext request, the policy, the deadline and the TLS settings. It is
built by :func:`plan_call` from the prepared request and the call's
arguments, and is immutable, so the attempt loop and the transport read it
but never pass its parts around one by one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Callable, Optional, Union
from urllib.parse import urlsplit

from requests import PreparedRequest

from .._fast import Record
from ..envelope import Envelope, target_from_endpoint
from ..envelope.fields import sealable
from ..errors import ConfigurationError
from ..idempotency.wire import HEADER_IDEMPOTENCY_KEY, validate_key
from ..keyring import validate_service_name
from ..telemetry.context import CONTEXT_HEADERS, current_context
from .deadline import Deadline
from .headers import drop_headers, header_pairs, header_value
from .policies import CallPolicy

__all__ = ["HEADER_REQUEST_ID", "SCHEME", "Call", "Cert", "Timeout", "plan_call"]

SCHEME = "mscomm://"
HEADER_REQUEST_ID = "X-Request-Id"
_REQUEST_ID = HEADER_REQUEST_ID.lower()
_IDEMPOTENCY_KEY = HEADER_IDEMPOTENCY_KEY.lower()
#: What plan_call drops from the request's own headers (names lower case).
_DROPPED = CONTEXT_HEADERS | {"transfer-encoding"}

Timeout = Union[None, float, tuple[Optional[float], Optional[float]]]
Cert = Union[None, bytes, str, tuple[Union[bytes, str], Union[bytes, str]]]


class Call(Record):
    """The facts every attempt of one call shares.

    Attributes:
        service: the target service (the seal's recipient).
        method: the upper-case HTTP method.
        suffix: the endpoint's path and query, sent after an instance's URL.
        target: the endpoint's canonical target, bound into every attempt's
            seal (never the instance URL's own path: see
            :mod:`mscomm_sync.envelope.target`).
        headers: the plaintext request's headers (``Content-Length`` aside).
        body: the plaintext body (``b""`` for none).
        content_type: the plaintext's ``Content-Type``, sealed with it.
        request_id: the call's ``X-Request-Id``, the same on every attempt.
        idempotency_key: the call's ``Idempotency-Key``, or ``None``; sealed,
            so the call needs protocol v2.
        policy: the target's :class:`CallPolicy`.
        deadline: when the whole call must be done.
        connect: the connect timeout of one attempt.
        may_repeat: the call may be sent again after a failure that may
            have reached the server.
        envelope: the calling service's envelope.
        verify: TLS verification, as in requests.
        cert: the client certificate, as in requests.
        trust_env: read proxy and CA settings from the environment.
    """

    __slots__ = (  # noqa: RUF023 - the fill order
        "service",
        "method",
        "suffix",
        "target",
        "headers",
        "body",
        "content_type",
        "request_id",
        "idempotency_key",
        "policy",
        "deadline",
        "connect",
        "may_repeat",
        "envelope",
        "verify",
        "cert",
        "trust_env",
    )

    service: str
    method: str
    suffix: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    content_type: Optional[str]
    request_id: str
    idempotency_key: Optional[str]
    policy: CallPolicy
    deadline: Deadline
    connect: float
    may_repeat: bool
    envelope: Envelope
    verify: Union[bool, str]
    cert: Cert
    trust_env: bool

    def __repr__(self) -> str:
        return f"<Call {self.method} service={self.service!r} request_id={self.request_id}>"


def plan_call(
    request: PreparedRequest,
    *,
    timeout: Timeout,
    idempotent: Optional[bool],
    verify: Union[bool, str],
    cert: Cert,
    trust_env: bool,
    policy_for: Callable[[str], CallPolicy],
    envelope: Envelope,
    clock: Callable[[], float],
) -> Call:
    """Return the :class:`Call` for a prepared ``mscomm://<service>/<path>`` request.

    A request without an ``X-Request-Id`` gets one: the id of the sealed
    request being served, if any (:func:`~mscomm_sync.current_request_id`;
    it then travels only sealed, never in clear), else a fresh one (16 hex
    digits). A call made while a sealed request is served has at most what
    is left of that request's deadline. The context headers the transport
    writes itself (``traceparent``, ``tracestate``, ``X-Mscomm-Deadline``)
    are dropped from the request's own, and so is a ``Transfer-Encoding``
    (it framed the plaintext; each attempt's sealed body has a length).
    A call with an ``Idempotency-Key`` may be repeated unless ``idempotent=False``.

    Raises:
        ConfigurationError: the target is not a valid service name, the
            endpoint starts with ``//``, or the idempotency key is invalid.
        TypeError: the body is a stream or files, which cannot be sealed.
    """
    parts = urlsplit(request.url or "")
    service = validate_service_name(parts.netloc, what="target service")
    path = parts.path or "/"
    if path.startswith("//"):
        # WSGI servers (werkzeug, waitress, gunicorn) collapse a leading "//"
        # in PATH_INFO, so such a request could never verify: say so now.
        raise ConfigurationError(
            "an endpoint must not start with '//' (servers collapse it, so it never verifies)",
            variable="endpoint",
            reason="invalid endpoint",
        )
    policy = policy_for(service)
    connect = policy.timeout.connect
    seconds = policy.timeout.deadline
    if isinstance(timeout, tuple):
        connect = timeout[0] if timeout[0] is not None else connect
        seconds = timeout[1] if timeout[1] is not None else seconds
    elif timeout is not None:
        seconds = timeout
    inherited = current_context()
    if inherited is not None and inherited.deadline is not None:
        seconds = min(seconds, max(inherited.deadline.remaining(), 0.0))
    method = (request.method or "GET").upper()
    headers = request.headers
    drop_headers(headers, _DROPPED)
    own_id = header_value(headers, _REQUEST_ID)
    if own_id is not None:
        request_id = str(own_id)
    elif inherited is not None and inherited.request_id is not None:
        request_id = inherited.request_id  # not in headers: v1 would send those in clear
    else:
        request_id = headers[HEADER_REQUEST_ID] = os.urandom(8).hex()
    key = validate_key(header_value(headers, _IDEMPOTENCY_KEY))
    if idempotent is None:
        idempotent = key is not None or method in policy.retry.idempotent_methods
    return Call._make(
        service,
        method,
        f"{path}?{parts.query}" if parts.query else path,
        target_from_endpoint(path, parts.query),
        headers,
        _body_bytes(request.body),
        header_value(headers, "content-type"),
        request_id,
        key,
        policy,
        Deadline._make(service, clock() + seconds, seconds, clock),
        connect,
        idempotent,
        envelope,
        verify,
        cert,
        trust_env,
    )


def end_to_end(call: Call) -> tuple[tuple[str, str], ...]:
    """Return the call's end-to-end headers, names lower case, the content type aside.

    That is what protocol v2 seals; v1 sends the call's headers in clear, so
    the transport asks for this only when it seals with v2.
    """
    return tuple((n, v) for n, v in sealable(header_pairs(call.headers)) if n != "content-type")


def _body_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError("a sealed call needs a bytes or str body, not a stream or files")
