"""The attempts of one call: instance choice, retries, failover, deadline.

Which layer does what:

* this loop owns the deadline, instance choice and failover, the retry
  budget and the pauses; a urllib3 ``Retry`` built from the
  :class:`~mscomm_sync.policies.RetryPolicy` counts the attempts, says which
  statuses are retryable and parses ``Retry-After``;
* every attempt is sealed afresh by the mounted
  :class:`~mscomm_sync.adapter.ServiceAdapter` and sent once through
  ``HTTPAdapter.send`` (urllib3's own retries are off: it would resend the
  same sealed bytes, which the peer's replay cache rightly refuses).

A failure before the connection was established (refused, connect timeout,
name resolution) proves the request was never sent, so it is retried for any
method, on another instance where one exists. Any later failure (read
timeout, reset, even on a reused keep-alive connection) may have reached the
server, so it is retried only when the call may be repeated: an idempotent
method, or ``idempotent=True``.

Every retry spends the retry budget except one after a refused connection:
nothing was listening, so the retry cannot add load to a struggling process.
A connect *timeout* does spend it: the host may simply be too busy to accept.

Each retry is logged once, at INFO, just before it is sent: ``retry`` when it
goes to the same instance, ``failover`` when it goes to another, with the
service, the instance, the attempt number and the reason for the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Callable, NoReturn, Optional

import attrs
import requests
from requests import Response
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.util.retry import Retry

from .balancer import PowerOfTwoBalancer
from .budget import RetryBudget
from .errors import DeadlineExceededError, InsecureResponseError, ServiceUnavailableError
from .policies import CallPolicy
from .registry.base import Instance

__all__ = ["AttemptLoop", "is_connect_phase", "is_refused"]

log = logging.getLogger("mscomm_sync.client")

#: Sends one attempt to an instance with ``(connect, read)`` timeouts.
SendOnce = Callable[[Instance, "tuple[float, float]"], Response]


def is_connect_phase(exc: BaseException) -> bool:
    """Return whether ``exc`` proves the request never left this host.

    Only a failure to establish the connection proves it; anything after
    (including a reset on a reused keep-alive connection) may have reached
    the server.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)


def is_refused(exc: BaseException) -> bool:
    """Return whether ``exc`` is a refused connection: nothing was listening.

    A connect timeout is not one: the host may be up but too busy to accept.
    """
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if not isinstance(reason, NewConnectionError) or isinstance(reason, NameResolutionError):
        return False
    return isinstance(reason.__cause__ or reason.__context__, ConnectionRefusedError)


@attrs.define(kw_only=True)
class AttemptLoop:
    """The mutable state of one call's attempts; :meth:`run` drives them.

    Attributes:
        service: the target service.
        method: the HTTP method.
        instances: the target's instances, as resolved for this call.
        policy: the target's policy.
        may_repeat: the call may be sent again after a failure that may have
            reached the server.
        deadline: the monotonic time the call must finish by.
        timeout: the call's deadline in seconds (for errors).
        connect: the connect timeout of one attempt.
        send: sends one attempt.
        balancer: picks instances.
        budget: the target's retry budget.
        clock: the monotonic clock.
        sleep: pauses between attempts.
        random: floats in ``[0, 1)`` for backoff jitter.
        request_id: the call's ``X-Request-Id``, for the log.
    """

    service: str
    method: str
    instances: Sequence[Instance]
    policy: CallPolicy
    may_repeat: bool
    deadline: float
    timeout: float
    connect: float
    send: SendOnce
    balancer: PowerOfTwoBalancer
    budget: RetryBudget
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    random: Callable[[], float]
    request_id: str = ""
    retry: Retry = attrs.field(init=False)
    tried: list[str] = attrs.field(init=False, factory=list)
    attempts: int = attrs.field(init=False, default=0)
    why: str = attrs.field(init=False, default="")
    pause: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self.retry = self.policy.retry.to_urllib3()

    def run(self) -> Response:
        """Make attempts until one answers or no retry is allowed.

        Returns:
            The last answer (it may carry a retryable status when retries ran
            out, the budget was spent or the next wait would pass the deadline).

        Raises:
            DeadlineExceededError: the deadline passed (also while reading a
                body), or the next pause would pass it.
            ServiceUnavailableError: the last attempt failed at the
                transport level and no retry was allowed.
            InsecureResponseError: an unsealed answer was not allowed.
        """
        while True:
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                raise DeadlineExceededError(self.service, self.timeout)
            instance = self._choose()
            per_try = self.policy.timeout.attempt
            read = remaining if per_try is None else min(per_try, remaining)
            self.attempts += 1
            try:
                response = self.send(instance, (min(self.connect, remaining), read))
            except DeadlineExceededError:
                raise  # the body outlasted the deadline
            except requests.RequestException as exc:
                self._after_failure(instance, exc)
                continue
            except InsecureResponseError as exc:
                # An intermediary's unsealed 502/503/504 is retried like the
                # service's own; its body is never returned.
                if not (self.may_repeat and exc.status in self.policy.retry.retry_statuses):
                    raise
                self._after_unsealed(instance, exc)
                continue
            self.balancer.readmit(instance.url)
            if not self._retry_answer(instance, response):
                return response

    def _choose(self) -> Instance:
        instance = self.balancer.choose(self.instances, self.tried)
        if self.tried:
            previous = self.tried[-1]
            if instance.url != previous:
                log.info(
                    "failover service=%s instance=%s from=%s attempt=%d reason=%s"
                    " backoff=%.3fs request_id=%s",
                    self.service, instance.url, previous, self.attempts + 1, self.why,
                    self.pause, self.request_id,
                )  # fmt: skip
            else:
                log.info(
                    "retry service=%s instance=%s attempt=%d reason=%s backoff=%.3fs"
                    " request_id=%s",
                    self.service, instance.url, self.attempts + 1, self.why, self.pause,
                    self.request_id,
                )  # fmt: skip
        self.tried.append(instance.url)
        return instance

    def _after_failure(self, instance: Instance, exc: requests.RequestException) -> None:
        connect_phase = is_connect_phase(exc)
        if connect_phase:
            self.balancer.eject(instance.url)
        if self.clock() >= self.deadline:
            raise DeadlineExceededError(self.service, self.timeout) from exc
        if not (connect_phase or self.may_repeat):
            self._unavailable(exc)
        error = ConnectTimeoutError(type(exc).__name__) if connect_phase else ProtocolError()
        try:
            self.retry = self.retry.increment(self.method, instance.url, error=error)
        except MaxRetryError:
            self._unavailable(exc)
        delay = self._backoff()
        if self.clock() + delay >= self.deadline:
            raise DeadlineExceededError(self.service, self.timeout) from exc
        refused = is_refused(exc)
        if not refused and not self._spend():
            self._unavailable(exc)
        self._pause("connection refused" if refused else type(exc).__name__, delay)

    def _after_unsealed(self, instance: Instance, exc: InsecureResponseError) -> None:
        try:
            self.retry = self.retry.increment(self.method, instance.url)
        except MaxRetryError:
            raise exc from None
        delay = self._backoff()
        if self.clock() + delay >= self.deadline or not self._spend():
            raise exc
        self._pause(f"unsealed status {exc.status}", delay)

    def _retry_answer(self, instance: Instance, response: Response) -> bool:
        status = response.status_code
        has_retry_after = "Retry-After" in response.headers
        if not (self.may_repeat and self.retry.is_retry(self.method, status, has_retry_after)):
            return False
        try:
            self.retry = self.retry.increment(self.method, instance.url, response=response.raw)
        except MaxRetryError:
            return False
        delay = self._backoff()
        if self.policy.retry.respect_retry_after:
            after: Optional[float] = self.retry.get_retry_after(response.raw)
            if after is not None:
                delay = after
        if self.clock() + delay >= self.deadline or not self._spend():
            return False
        response.close()
        self._pause(f"status {status}", delay)
        return True

    def _backoff(self) -> float:
        return self.policy.retry.backoff(len(self.retry.history), self.random)

    def _spend(self) -> bool:
        if self.budget.try_spend():
            return True
        log.warning(
            "retry budget spent service=%s attempt=%d request_id=%s",
            self.service, self.attempts, self.request_id,
        )  # fmt: skip
        return False

    def _pause(self, reason: str, delay: float) -> None:
        # The retry is logged by _choose, once its instance is known.
        self.why = reason
        self.pause = delay
        self.sleep(delay)

    def _unavailable(self, exc: BaseException) -> NoReturn:
        raise ServiceUnavailableError(self.service, self.attempts, exc) from exc
