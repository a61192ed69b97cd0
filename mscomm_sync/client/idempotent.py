"""What a service's answer says about a call's idempotency key: the client's part.

A call with a key (``client.request(..., idempotency_key="charge-1001")``)
carries it as a sealed ``Idempotency-Key`` header, so it needs protocol v2
with the target. A service that honours keys says what it did in the sealed
``X-Mscomm-Idempotency`` answer header (see :mod:`mscomm_sync.wsgi.idempotent`):

* ``in-progress`` (409): the attempt loop waits ``Retry-After`` and tries
  again, within the retries and the deadline; then
  :class:`~mscomm_sync.errors.IdempotencyInProgressError`;
* ``key-reused`` (422): :class:`~mscomm_sync.errors.IdempotencyKeyReusedError`;
* ``answer-not-kept`` (410): :class:`~mscomm_sync.errors.IdempotentAnswerLostError`;
* anything else: the answer is returned as it is.

An answer without the header comes from a service that does not honour
keys: the client logs a WARNING, once per service and process, since
retrying such a call after a failure may run it twice.
"""

from __future__ import annotations

import contextlib
import logging

from requests import Response

from ..errors import (
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    IdempotentAnswerLostError,
)
from ..idempotency.wire import (
    ANSWER_NOT_KEPT,
    HEADER_IDEMPOTENCY_STATE,
    IN_PROGRESS,
    KEY_REUSED,
)
from .call import Call

__all__ = ["check_answer", "in_progress"]

log = logging.getLogger("mscomm_sync.client")
#: The services already warned about, in this process.
_warned: set[str] = set()


def in_progress(call: Call, response: Response) -> bool:
    """Return whether ``response`` says another request with the call's key is running."""
    return (
        call.idempotency_key is not None
        and response.status_code == 409
        and response.headers.get(HEADER_IDEMPOTENCY_STATE) == IN_PROGRESS
    )


def check_answer(call: Call, response: Response) -> Response:
    """Return ``response``, or raise the error its idempotency state stands for.

    Raises:
        IdempotencyInProgressError: still running after every retry (409).
        IdempotencyKeyReusedError: the key names another request (422).
        IdempotentAnswerLostError: it ran before; its answer was not kept (410).
    """
    key = call.idempotency_key
    if key is None:
        return response
    state = response.headers.get(HEADER_IDEMPOTENCY_STATE)
    if state is None:
        if call.service not in _warned:
            _warned.add(call.service)
            log.warning(
                "service %s does not honour idempotency keys: a call retried after a failure"
                " may run twice (enable EncryptionMiddleware(idempotency=True) there)",
                call.service,
                extra={"mscomm.target": call.service, "mscomm.request_id": call.request_id},
            )
        return response
    if in_progress(call, response):
        retry_after = 1.0
        with contextlib.suppress(ValueError):
            retry_after = float(response.headers.get("Retry-After", "1"))
        response.close()
        raise IdempotencyInProgressError(
            service=call.service, idempotency_key=key, retry_after=retry_after
        )
    if state == KEY_REUSED and response.status_code == 422:
        response.close()
        raise IdempotencyKeyReusedError(service=call.service, idempotency_key=key)
    if state == ANSWER_NOT_KEPT and response.status_code == 410:
        response.close()
        raise IdempotentAnswerLostError(service=call.service, idempotency_key=key)
    return response
