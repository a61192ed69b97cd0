"""Run a handler at most once per (caller, idempotency key): the middleware's part.

A sealed v2 request may carry an ``Idempotency-Key`` among its sealed
headers. When the service enables keys (``EncryptionMiddleware(idempotency=...)``),
:func:`answer_once` claims the key in the store before the app runs and
answers every repeat from what it finds:

======================  ======  ==================================================
the store has           status  what the caller gets (``X-Mscomm-Idempotency``)
======================  ======  ==================================================
nothing                 app's   the app runs; its answer, kept (``kept``), or too
                                large to keep (``not-kept``); a crash or a 5xx
                                releases the key (``released``)
the same request, done  app's   the kept answer again, sealed afresh (``replayed``)
the same request, done  410     its answer was not kept (``answer-not-kept``)
the same request, busy  409     try later, ``Retry-After`` (``in-progress``)
another request         422     the key was used for another method, target or
                                body (``key-reused``)
a failure               503     not run; seal it again (``unavailable``)
======================  ======  ==================================================

A 5xx (or a crash, which the middleware answers with 500) releases the key
rather than keep the answer: the server says it failed, so a repeat should
run the handler again, not be told of the failure for a day.
"""

from __future__ import annotations

import json
import math
from typing import Callable, Optional, Union

import attrs

from ..envelope import NOT_EXECUTED_CONTENT_TYPE
from ..errors import ConfigurationError, IdempotencyStoreError
from ..idempotency import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ANSWER_SIZE,
    DEFAULT_RETENTION,
    IdempotencyStore,
    Outcome,
    StoredAnswer,
    default_idempotency_store,
)
from ..idempotency.store import fingerprint, log, scope_of
from ..idempotency.wire import (
    ANSWER_NOT_KEPT,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_IDEMPOTENCY_STATE,
    IN_PROGRESS,
    INVALID_KEY,
    KEEP_NONE,
    KEPT,
    KEY_REUSED,
    NOT_KEPT,
    RELEASED,
    REPLAYED,
    UNAVAILABLE,
    valid_key,
)
from .response import Answer

__all__ = ["Idempotency", "answer_once", "idempotency_key", "resolve_idempotency"]

_KEY_FIELD = HEADER_IDEMPOTENCY_KEY.lower()
_STATE_FIELD = HEADER_IDEMPOTENCY_STATE.lower()


def _positive_finite(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigurationError(
            f"{attr.name} must be a positive number of seconds",
            variable=attr.name,
            reason="invalid",
        )


def _size(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise ConfigurationError(
            f"{attr.name} must be a whole number of bytes", variable=attr.name, reason="invalid"
        )


@attrs.frozen(kw_only=True)
class Idempotency:
    """How a service honours idempotency keys.

    Attributes:
        store: where claims and answers are kept; ``None`` for the host-wide
            default (:func:`~mscomm_sync.idempotency.default_idempotency_store`),
            made when the middleware is. Every process and host that serves
            the same service must share it for the promise to hold: the
            default is shared by the processes of one host only.
        retention: seconds an answer is kept for repeats.
        lease: seconds a running request holds its key if it never finishes
            (its process hung, say); a dead process's hold ends at once.
        max_answer_size: the largest answer body kept; a larger answer is
            returned but not kept, and repeats are told so (410).
    """

    store: Optional[IdempotencyStore] = None
    retention: float = attrs.field(default=DEFAULT_RETENTION, validator=_positive_finite)
    lease: float = attrs.field(default=DEFAULT_LEASE, validator=_positive_finite)
    max_answer_size: int = attrs.field(default=DEFAULT_MAX_ANSWER_SIZE, validator=_size)


def resolve_idempotency(option: Union[bool, Idempotency, None]) -> Optional[Idempotency]:
    """Return the settings the middleware's ``idempotency=`` option stands for, store made.

    Raises:
        ConfigurationError: the option is not ``None``, a bool or :class:`Idempotency`.
    """
    if option is None or option is False:
        return None
    if option is True:
        option = Idempotency()
    if not isinstance(option, Idempotency):
        raise ConfigurationError(
            "idempotency must be True, False or an Idempotency",
            variable="idempotency",
            reason="invalid",
        )
    if option.store is None:
        option = attrs.evolve(option, store=default_idempotency_store())
    return option


def idempotency_key(headers: tuple[tuple[str, str], ...]) -> Optional[str]:
    """Return the ``Idempotency-Key`` among a v2 request's sealed headers, if any."""
    for name, value in headers:
        if name == _KEY_FIELD:
            return value
    return None


def answer_once(
    settings: Idempotency,
    *,
    service: str,
    caller: str,
    key: str,
    method: str,
    target: str,
    body: bytes,
    run: Callable[[], tuple[Answer, bool]],
) -> Answer:
    """Run ``run`` unless the store says this key was, or is being, answered.

    Args:
        settings: the service's settings (their store set).
        service: this service.
        caller: the verified sender.
        key: the request's idempotency key.
        method: the verified method.
        target: the verified target.
        body: the opened body.
        run: runs the app; returns its answer and whether the app crashed.

    Returns:
        The answer to seal, its ``X-Mscomm-Idempotency`` header set.
    """
    if not valid_key(key):
        return _own(400, "Bad Request", INVALID_KEY, "the idempotency key is not valid")
    store = settings.store
    assert store is not None  # resolve_idempotency made it
    scope = scope_of(service, caller, key)
    try:
        claim = store.claim(scope, fingerprint(method, target, body), lease=settings.lease)
    except IdempotencyStoreError as exc:
        _log_store_failure(exc, service, caller)
        return _not_run()
    outcome = claim.outcome
    if outcome is Outcome.REUSED:
        return _own(
            422,
            "Unprocessable Content",
            KEY_REUSED,
            "this idempotency key was used for another method, target or body",
        )
    if outcome is Outcome.RUNNING:
        wait = max(1, math.ceil(claim.retry_after))
        answer = _own(409, "Conflict", IN_PROGRESS, "a request with this key is running")
        answer.headers.append(("Retry-After", str(wait)))
        return answer
    if outcome is Outcome.DONE:
        if claim.answer is None:
            return _own(410, "Gone", ANSWER_NOT_KEPT, "the answer to this key was not kept")
        kept = claim.answer
        code = _code(kept.status)
        again = Answer(kept.status, code, list(kept.headers), kept.body, kept.content_type)
        return _marked(again, REPLAYED)
    answer, crashed = run()
    try:
        if crashed or answer.code >= 500:
            store.release(scope, claim.token)
            return _marked(answer, RELEASED)
        keep = len(answer.body) <= settings.max_answer_size
        stored = (
            StoredAnswer(
                answer.status, tuple(_unmarked(answer.headers)), answer.body, answer.content_type
            )
            if keep
            else None
        )
        store.complete(scope, claim.token, stored, retention=settings.retention)
    except IdempotencyStoreError as exc:
        # The app ran and this is its answer; the key stays held until its
        # lease ends, and a repeat after that would run the app again.
        _log_store_failure(exc, service, caller)
        return _marked(answer, KEEP_NONE)
    return _marked(answer, KEPT if keep else NOT_KEPT)


def _marked(answer: Answer, state: str) -> Answer:
    headers = _unmarked(answer.headers)
    headers.append((HEADER_IDEMPOTENCY_STATE, state))
    return answer._replace(headers=headers)


def _unmarked(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The app's headers without an ``X-Mscomm-Idempotency`` of its own."""
    return [(n, v) for n, v in headers if n.lower() != _STATE_FIELD]


def _own(code: int, reason: str, state: str, error: str) -> Answer:
    body = json.dumps({"error": error, "idempotency": state}).encode("ascii")
    headers = [("Cache-Control", "no-store"), (HEADER_IDEMPOTENCY_STATE, state)]
    return Answer(f"{code} {reason}", code, headers, body, "application/json")


def _not_run() -> Answer:
    body = json.dumps({"error": "not run: seal the request again", "idempotency": UNAVAILABLE})
    headers = [
        ("Retry-After", "1"),
        ("Cache-Control", "no-store"),
        (HEADER_IDEMPOTENCY_STATE, UNAVAILABLE),
    ]
    return Answer(
        "503 Service Unavailable", 503, headers, body.encode("ascii"), NOT_EXECUTED_CONTENT_TYPE
    )


def _code(status: str) -> int:
    return int(status.split(" ", 1)[0])


def _log_store_failure(exc: IdempotencyStoreError, service: str, caller: str) -> None:
    log.error(
        "idempotency store failed service=%s caller=%s reason=%s",
        service, caller, exc.reason,
        extra={"mscomm.service": service, "mscomm.caller": caller, "mscomm.reason": exc.reason},
    )  # fmt: skip
