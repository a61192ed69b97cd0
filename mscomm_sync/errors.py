"""The exceptions mscomm_sync raises.

Every error is a subclass of :class:`MscommError`. Each one carries the facts
that explain it as attributes, captured when it is raised, so that callers can
branch on fields instead of parsing messages. Messages name services, variables
and paths; they never contain key material, ciphertext or plaintext.
"""

from __future__ import annotations

from typing import Any, Optional

import requests

__all__ = [
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineExceededError",
    "InsecureResponseError",
    "IntegrityError",
    "MscommError",
    "RegistryError",
    "ReplayGapError",
    "RequestRejectedError",
    "ResponseTooLargeError",
    "ServiceNotFoundError",
    "ServiceUnavailableError",
]


class MscommError(Exception):
    """Base class of every error raised by mscomm_sync.

    Every error pickles (Celery, multiprocessing) with its message and its
    fields; ``last_error``, the foreign exception behind a transport
    failure, is left out of the pickle (its ``reason`` stays).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        if "last_error" in state:
            state["last_error"] = None
        return (_restore, (type(self), self.args, state))


class ConfigurationError(MscommError, ValueError):
    """A setting or key is missing or malformed.

    Attributes:
        variable: the environment variable or option that holds the bad value,
            or ``None`` when the value was passed directly.
        reason: a short description of what is wrong with it. It never
            quotes the value.
    """

    def __init__(self, message: str, *, variable: Optional[str] = None, reason: str = "") -> None:
        super().__init__(message)
        self.variable = variable
        self.reason = reason


class IntegrityError(MscommError):
    """A sealed message could not be verified and opened.

    Every reason for rejection (bad tag, stale timestamp, replay, unknown key
    id, malformed envelope, wrong sender or recipient) raises this same type
    with the same message, so a peer can learn nothing from it. The reason is
    written to the ``mscomm_sync.envelope`` log and kept in :attr:`reason` for
    the local side's own logging; never send it back to a peer.

    Attributes:
        service: the sender the message claimed to come from, if it named one.
        reason: why it was rejected (for local logs only).
    """

    MESSAGE = "sealed message rejected"

    def __init__(self, *, service: Optional[str] = None, reason: str = "") -> None:
        super().__init__(self.MESSAGE)
        self.service = service
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(service={self.service!r})"


class ReplayGapError(IntegrityError):
    """A verified request was sealed before the receiver's replay store began to remember.

    The store cannot tell its first delivery from a replay (a reboot or a
    new container cleared what it knew), so the request is not run. It is
    authentic, so the middleware can say so to its sender in a sealed
    answer, and the sender seals it again.

    Attributes:
        service: the verified sender.
        message_id: the request's message id.
        not_before: the first whole second (Unix time) the store vouches for.
    """

    def __init__(self, *, service: str, message_id: str, not_before: float) -> None:
        super().__init__(service=service, reason="sealed before the replay store began")
        self.message_id = message_id
        self.not_before = not_before


class InsecureResponseError(IntegrityError):
    """A sealed request got an unsealed answer (a downgrade), and plaintext
    replies were not allowed for that service.

    Attributes:
        service: the service that answered.
        status: the HTTP status of the unsealed answer.
    """

    MESSAGE = "unsealed response to a sealed request refused"

    def __init__(self, *, service: Optional[str] = None, status: Optional[int] = None) -> None:
        super().__init__(service=service, reason="unsealed response")
        self.status = status


class RegistryError(MscommError):
    """The service registry could not be read or written.

    Attributes:
        location: the file path or etcd address involved.
        reason: what went wrong.
    """

    def __init__(self, message: str, *, location: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.location = location
        self.reason = reason


class ServiceNotFoundError(MscommError, LookupError):
    """Nothing is registered under the requested service name.

    Attributes:
        service: the name that was looked up.
    """

    def __init__(self, service: str) -> None:
        super().__init__(f"no instances registered for service {service!r}")
        self.service = service


class ServiceUnavailableError(MscommError, requests.ConnectionError):
    """Every attempt to reach a service failed at the transport level.

    Attributes:
        service: the target service.
        attempts: how many attempts were made.
        last_error: the exception that failed the last attempt, as it reached
            the client (from sending, a requests exception; from reading the
            answer, the socket or urllib3 error), or ``None``.
        reason: a short name for that failure (``connection refused``,
            ``ConnectTimeout``, ``ReadTimeout``, ``ConnectionResetError``, ...).
    """

    def __init__(
        self,
        service: str,
        attempts: int,
        last_error: Optional[BaseException] = None,
        *,
        reason: Optional[str] = None,
    ) -> None:
        if reason is None:
            reason = type(last_error).__name__ if last_error is not None else "no attempt possible"
        super().__init__(f"service {service!r} unavailable after {attempts} attempt(s): {reason}")
        self.service = service
        self.attempts = attempts
        self.last_error = last_error
        self.reason = reason


class DeadlineExceededError(MscommError, requests.Timeout):
    """The call's overall deadline passed before an answer arrived.

    Attributes:
        service: the target service.
        timeout: the deadline that was exceeded, in seconds.
    """

    def __init__(self, service: str, timeout: float) -> None:
        super().__init__(f"call to service {service!r} exceeded its {timeout:g}s deadline")
        self.service = service
        self.timeout = timeout


class CircuitOpenError(MscommError):
    """The circuit breaker for a service is open; no request was sent.

    Attributes:
        service: the target service.
        retry_after: seconds until the breaker lets a probe through.
    """

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(
            f"circuit for service {service!r} is open; next probe in {max(retry_after, 0.0):.1f}s"
        )
        self.service = service
        self.retry_after = retry_after


class RequestRejectedError(MscommError):
    """The peer's middleware refused the request before it reached the app.

    Such refusals (400, 401, 403, 413) arrive unsealed, because the peer could
    not verify who was asking. The peer's log has the reason.

    Attributes:
        service: the service that refused.
        status: the HTTP status it answered with.
    """

    def __init__(self, service: str, status: int) -> None:
        super().__init__(f"service {service!r} rejected the request with HTTP {status}")
        self.service = service
        self.status = status


class ResponseTooLargeError(MscommError):
    """An answer was larger than the client accepts; it was not read past the limit.

    A declared ``Content-Length`` above the limit is refused before a byte
    of the body is read; an answer without one is read up to the limit and
    no further. The connection is closed either way.

    Attributes:
        service: the service that answered.
        limit: the largest answer body accepted, in bytes
            (``CallPolicy.max_answer_size``).
        declared: the answer's declared length, or ``None`` when it had none
            (it was cut off at the limit).
    """

    def __init__(self, service: str, limit: int, declared: Optional[int] = None) -> None:
        size = f"declared {declared} bytes" if declared is not None else "cut off at the limit"
        super().__init__(
            f"answer from service {service!r} is larger than its {limit}-byte limit ({size})"
        )
        self.service = service
        self.limit = limit
        self.declared = declared


def _restore(cls: type[MscommError], args: tuple[Any, ...], state: dict[str, Any]) -> MscommError:
    """Rebuild a pickled error without calling its ``__init__`` (whose arguments differ)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
