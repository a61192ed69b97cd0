"""The exceptions mscomm_sync raises.

Every error is a subclass of :class:`MscommError`. Each one carries the facts
that explain it as attributes, captured when it is raised, so that callers can
branch on fields instead of parsing messages. Messages name services, variables
and paths; they never contain key material, ciphertext or plaintext.

Every error a call raises also says whether the request reached the service,
as its ``delivery`` field and in its type: a :class:`NotDeliveredError`
certainly did not (nothing ran: send it again whatever it does), a
:class:`MaybeDeliveredError` may have (it may have run: send it again only
with an idempotency key the service honours), and an :class:`AnsweredError`
got an answer the client refused or that refused it.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Optional

import requests

#: The variable that names the default registry (the registry layer owns it; see
#: ``mscomm_sync.registry.location``). Only named here, in a hint.
_ENV_REGISTRY = "MSCOMM_REGISTRY"

__all__ = [
    "AnswerLostError",
    "AnsweredError",
    "CircuitOpenError",
    "ConfigurationError",
    "DeadlineAfterSendingError",
    "DeadlineBeforeSendingError",
    "DeadlineExceededError",
    "DeadlineSpentOnArrivalError",
    "Delivery",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyReusedError",
    "IdempotencyStoreError",
    "IdempotentAnswerLostError",
    "InsecureResponseError",
    "IntegrityError",
    "MaybeDeliveredError",
    "MscommError",
    "NotDeliveredError",
    "RegistryError",
    "ReplayGapError",
    "RequestRejectedError",
    "ResponseTooLargeError",
    "ServiceNotFoundError",
    "ServiceUnavailableError",
    "ServiceUnreachableError",
    "UnverifiedAnswerError",
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


class Delivery(enum.Enum):
    """Whether a failed call's request reached the service."""

    #: It certainly did not: no attempt left this host, or the service said
    #: (sealed) that it did not run it. Sending it again is always safe.
    NOT_DELIVERED = "not delivered"
    #: It may have: an attempt left and no answer came back. It may have run.
    MAYBE_DELIVERED = "may have been delivered"
    #: It did, and an answer came back that refused it or that was refused.
    ANSWERED = "answered"


class NotDeliveredError(MscommError):
    """A call failed and its request certainly never reached the service: nothing ran.

    Sending it again is safe whatever it does.
    """

    delivery = Delivery.NOT_DELIVERED


class MaybeDeliveredError(MscommError):
    """A call failed after its request may have reached the service: it may have run.

    Send it again only with an idempotency key the service honours.
    """

    delivery = Delivery.MAYBE_DELIVERED


class AnsweredError(MscommError):
    """A call got an answer, but one that refused the request or that the client refused."""

    delivery = Delivery.ANSWERED


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
        request: the verified request without its body (what the answer is
            sealed for: its version and keys), or ``None``.
    """

    def __init__(
        self, *, service: str, message_id: str, not_before: float, request: Any = None
    ) -> None:
        super().__init__(service=service, reason="sealed before the replay store began")
        self.message_id = message_id
        self.not_before = not_before
        self.request = request


class UnverifiedAnswerError(IntegrityError, AnsweredError):
    """An answer came back but did not verify: altered, forged, replayed, or for another request.

    The request may have run; what the service answered is unknown.
    """

    MESSAGE = "sealed answer rejected"


class InsecureResponseError(IntegrityError, AnsweredError):
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


class ServiceNotFoundError(NotDeliveredError, LookupError):
    """Nothing is registered under the requested service name, in the registry that was read.

    Attributes:
        service: the name that was looked up.
        registry: the location of the registry that was read (a file path
            or an ``etcd://`` location), or ``None`` when the registry does
            not say (one that has no ``location``).
    """

    def __init__(self, service: str, registry: Optional[str] = None) -> None:
        if registry is None:
            message = f"no instances registered for service {service!r}"
        else:
            message = (
                f"no instances registered for service {service!r} in registry {registry}; "
                f"see what it holds with `mscomm registry list --registry {registry}`, and "
                f"check that ${_ENV_REGISTRY} (or registry=) names the registry {service} "
                "registers in"
            )
        super().__init__(message)
        self.service = service
        self.registry = registry


class ServiceUnavailableError(MscommError, requests.ConnectionError):
    """Every attempt to reach a service failed at the transport level.

    A call raises one of its two kinds: :class:`ServiceUnreachableError`
    (no attempt reached the service) or :class:`AnswerLostError` (one may
    have, and its answer was lost).

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

    #: Unknown for the base class; its two kinds say.
    delivery = Delivery.MAYBE_DELIVERED


class ServiceUnreachableError(ServiceUnavailableError, NotDeliveredError):
    """No attempt reached the service: each failed before its connection was made,
    or was one the service said (sealed) it did not run. Nothing ran."""

    delivery = Delivery.NOT_DELIVERED


class AnswerLostError(ServiceUnavailableError, MaybeDeliveredError):
    """An attempt may have reached the service, and its answer was lost (a reset,
    a read timeout, a connection closed mid-answer). It may have run."""

    delivery = Delivery.MAYBE_DELIVERED


class DeadlineExceededError(MscommError, requests.Timeout):
    """The call's overall deadline passed before an answer arrived.

    A call raises one of its two kinds: :class:`DeadlineBeforeSendingError`
    (no attempt had been sent) or :class:`DeadlineAfterSendingError` (one
    had, and may have run).

    Attributes:
        service: the target service.
        timeout: the deadline that was exceeded, in seconds.
    """

    #: Unknown for the base class; its two kinds say.
    delivery = Delivery.MAYBE_DELIVERED

    def __init__(self, service: str, timeout: float) -> None:
        super().__init__(f"call to service {service!r} exceeded its {timeout:g}s deadline")
        self.service = service
        self.timeout = timeout


class DeadlineBeforeSendingError(DeadlineExceededError, NotDeliveredError):
    """The deadline passed before any attempt was sent (connecting, or waiting to retry
    after attempts that never left). Nothing ran."""

    delivery = Delivery.NOT_DELIVERED


class DeadlineAfterSendingError(DeadlineExceededError, MaybeDeliveredError):
    """The deadline passed after an attempt was sent and before its answer came: it may
    have run."""

    delivery = Delivery.MAYBE_DELIVERED


class DeadlineSpentOnArrivalError(DeadlineExceededError, NotDeliveredError):
    """The service got the request only once its deadline was spent, and did not run it.

    It said so in a sealed answer (a ``504`` marked ``X-Mscomm-Deadline-Spent``),
    which only it can seal: the request reached it but its app never saw it,
    so nothing ran and sending it again, with a fresh deadline, is safe.
    """

    delivery = Delivery.NOT_DELIVERED


class CircuitOpenError(NotDeliveredError):
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


class RequestRejectedError(AnsweredError):
    """The peer's middleware refused the request before it reached the app.

    Such refusals (400, 401, 403, 413) arrive unsealed, because the peer could
    not verify who was asking, so the caller learns only the status. The
    reason is in the peer's own log (logger ``mscomm_sync.wsgi``, WARNING,
    ``refused <status>: <reason> (... kid=...)``); the message says where, and
    what usually causes each status. It names key ids, which are public,
    never keys.

    Attributes:
        service: the service that refused.
        status: the HTTP status it answered with.
        caller: the service the request was sealed as, or ``None``.
        key_id: the key id the request was sealed with, or ``None``: in
            protocol v2 the pair ``<caller's key id>-<service's key id>``
            (the service logs the first half as ``kid``); in v1 the id of the
            shared key.
        version: the protocol version it was sealed with (``"1"`` or ``"2"``),
            or ``None``.
    """

    def __init__(
        self,
        service: str,
        status: int,
        *,
        caller: Optional[str] = None,
        key_id: Optional[str] = None,
        version: Optional[str] = None,
    ) -> None:
        super().__init__(_rejection_message(service, status, caller, key_id, version))
        self.service = service
        self.status = status
        self.caller = caller
        self.key_id = key_id
        self.version = version


def _rejection_message(
    service: str,
    status: int,
    caller: Optional[str],
    key_id: Optional[str],
    version: Optional[str],
) -> str:
    """Say what a refusal means: how it was sealed, where its reason is, what usually causes it."""
    sealed = [f"as {caller!r}"] if caller is not None else []
    if version is not None:
        sealed.append(f"protocol v{version}")
    pair = version == "2" and key_id is not None and len(key_id) == 33 and key_id[16] == "-"
    if key_id is not None:
        sealed.append(f"key ids {key_id}" if pair else f"key id {key_id}")
    how = f" (sealed {', '.join(sealed)})" if sealed else ""
    # The service logs the key id the seal claims: the caller's own in v2.
    kid = f", kid={key_id[:16]!r}" if key_id is not None else ""
    text = (
        f"service {service!r} rejected the request with HTTP {status}{how}. The reason is "
        f"in {service}'s log (logger mscomm_sync.wsgi, WARNING 'refused {status}: ...'{kid})."
    )
    who = repr(caller) if caller is not None else "the caller"
    name = _variable(caller) if caller is not None else "<CALLER>"
    if status == 401:
        if pair and key_id is not None:
            own, theirs = key_id[:16], key_id[17:]
            keys = (
                f" {service} trusts no public key {own} for {who} (compare `mscomm key id "
                f"--from-env {name}_PRIVATE_KEY`, or `mscomm key public < KEYFILE`, with the "
                f"keys of {who} in {service}'s trust file or {name}_PUBLIC_KEY);"
                f" {theirs} is not a key {service} holds ({who} has a wrong or stale public "
                f"key of {service});"
            )
        elif version == "1":
            keys = (
                f" {service} holds no shared key {key_id} of {who} (the two sides' "
                f"{name}_ENCRYPTION_KEY differ: compare `mscomm key id --v1-from-env "
                f"{name}_ENCRYPTION_KEY` on both);"
            )
        else:
            keys = f" {service} does not know the key the request was sealed with;"
        return (
            f"{text} Usual causes:{keys} the two hosts' clocks differ by more than the "
            "replay window; the request was altered on the way."
        )
    if status == 403:
        return (
            f"{text} {service} verified {who} but does not take calls from it: name it in "
            f"the trust file's callers for {service} (`mscomm trust callers`), in "
            f"allowed_callers=, or in MSCOMM_CALLERS, on {service}."
        )
    if status == 413:
        return f"{text} The request body is larger than {service} accepts (its max_body_size)."
    if status == 400:
        return (
            f"{text} The request arrived malformed: a proxy on the way changed its framing, "
            f"or {service} is mounted at another path (SCRIPT_NAME) than the one it expects."
        )
    return text


def _variable(service: str) -> str:
    """The ``<NAME>`` of a service's variables (as ``keyring.variable_name``, which the
    base layer may not import)."""
    return re.sub(r"[^A-Z0-9]", "_", service.upper())


class ResponseTooLargeError(AnsweredError):
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


class IdempotencyStoreError(MscommError):
    """An idempotency store could not be read or written (on the service's side).

    The middleware then does not run the handler (it could not promise to
    run it only once) and tells the caller, sealed, that it did not.

    Attributes:
        store: the store's ``repr``.
        reason: what failed; never a key or an answer.
    """

    def __init__(self, message: str, *, store: str, reason: str) -> None:
        super().__init__(message)
        self.store = store
        self.reason = reason


class IdempotencyError(MscommError):
    """The service refused a call because of its idempotency key.

    Attributes:
        service: the service that answered.
        idempotency_key: the call's key (a caller's own identifier, not a secret).
        status: the HTTP status the service answered with.
    """

    def __init__(self, message: str, *, service: str, idempotency_key: str, status: int) -> None:
        super().__init__(message)
        self.service = service
        self.idempotency_key = idempotency_key
        self.status = status


class IdempotencyInProgressError(IdempotencyError, MaybeDeliveredError):
    """A request with this key is still running on the service (409), after every retry.

    Its outcome is not known yet: send the call again later, with the same key.

    Attributes:
        retry_after: the seconds the service asked to wait.
    """

    def __init__(self, *, service: str, idempotency_key: str, retry_after: float) -> None:
        super().__init__(
            f"service {service!r} is still running the request with this idempotency key;"
            " send it again later with the same key",
            service=service,
            idempotency_key=idempotency_key,
            status=409,
        )
        self.retry_after = retry_after


class IdempotencyKeyReusedError(IdempotencyError, AnsweredError):
    """The key was used before for another method, target or body (422); nothing ran now.

    A key names one request: give each different request its own key.
    """

    def __init__(self, *, service: str, idempotency_key: str) -> None:
        super().__init__(
            f"service {service!r} refused the call: its idempotency key was used for"
            " another method, target or body",
            service=service,
            idempotency_key=idempotency_key,
            status=422,
        )


class IdempotentAnswerLostError(IdempotencyError, AnsweredError):
    """The request with this key ran before, but its answer was not kept (410).

    It was larger than the service keeps, or the service's store lost it. It
    ran: do not send it again under a new key unless running it twice is safe.
    """

    def __init__(self, *, service: str, idempotency_key: str) -> None:
        super().__init__(
            f"service {service!r} ran the request with this idempotency key before,"
            " but did not keep its answer",
            service=service,
            idempotency_key=idempotency_key,
            status=410,
        )


def _restore(cls: type[MscommError], args: tuple[Any, ...], state: dict[str, Any]) -> MscommError:
    """Rebuild a pickled error without calling its ``__init__`` (whose arguments differ)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
