"""The attempts of one call: instance choice, retries, failover, deadline.

Which layer does what:

* this loop owns the deadline, instance choice and failover, the retry
  budget and the pauses; a urllib3 ``Retry`` built from the
  :class:`~mscomm_sync.client.policies.RetryPolicy` counts the attempts, says which
  statuses are retryable and parses ``Retry-After``;
* every attempt is sealed afresh by the
  :class:`~mscomm_sync.client.transport.SealedTransport` and sent once
  through ``HTTPAdapter.send`` (urllib3's own retries are off: it would
  resend the same sealed bytes, which the peer's replay cache rightly
  refuses). The transport reports a transport failure as one
  :class:`~mscomm_sync.client.failures.AttemptFailed`, whose fields say
  whether it happened before the connection was established.

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

import contextlib
import logging
from collections.abc import Sequence
from typing import Callable, NoReturn

from requests import Response
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from ..errors import AnswerLostError, InsecureResponseError, ServiceUnreachableError
from ..registry.base import Instance
from ..telemetry.calls import NO_ATTEMPT, NO_CALL, AttemptRecord, CallRecord
from .balancer import PowerOfTwoBalancer
from .budget import RetryBudget
from .call import Call
from .failures import AttemptFailed
from .headers import header_value
from .idempotent import check_answer, in_progress
from .transport import SealedTransport

__all__ = ["AttemptLoop"]

log = logging.getLogger("mscomm_sync.client")
#: The failures of an instance that took too long to answer an attempt.
_TIMED_OUT = frozenset({"ReadTimeout"})


class AttemptLoop:
    """The mutable state of one call's attempts; :meth:`run` drives them.

    A plain class with slots, not attrs: one is built for every call, and a
    keyword-only attrs ``__init__`` cost more than the rest of the set-up.

    Args:
        call: the call's fixed facts.
        instances: the target's instances, as resolved for this call.
        transport: sends one sealed attempt.
        balancer: picks instances.
        budget: the target's retry budget.
        clock: the monotonic clock.
        sleep: pauses between attempts.
        random: floats in ``[0, 1)`` for backoff jitter.
        record: the call's telemetry record (each attempt gets one of its own).
    """

    __slots__ = ("attempts", "balancer", "budget", "call", "clock", "current", "instances",
                 "pause", "random", "record", "retry", "sent", "sleep", "transport", "tried",
                 "why")  # fmt: skip

    def __init__(
        self,
        call: Call,
        instances: Sequence[Instance],
        transport: SealedTransport,
        balancer: PowerOfTwoBalancer,
        budget: RetryBudget,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        random: Callable[[], float],
        record: CallRecord = NO_CALL,
    ) -> None:
        self.call = call
        self.instances = instances
        self.transport = transport
        self.balancer = balancer
        self.budget = budget
        self.clock = clock
        self.sleep = sleep
        self.random = random
        self.record = record
        self.retry: Retry = call.policy.retry.to_urllib3()
        self.tried: list[str] = []
        self.attempts = 0
        self.why = ""
        self.pause = 0.0
        #: Whether an attempt may have reached the service (decides which error says so).
        self.sent = False
        #: The telemetry record of the attempt being made.
        self.current: AttemptRecord = NO_ATTEMPT

    def run(self) -> Response:
        """Make attempts until one answers or no retry is allowed.

        Returns:
            The last answer (it may carry a retryable status when retries ran
            out, the budget was spent or the next wait would pass the deadline).

        Raises:
            DeadlineExceededError: the deadline passed (also while reading a
                body), or the next pause would pass it; its kind says
                whether an attempt had been sent.
            ServiceUnavailableError: the last attempt failed at the
                transport level and no retry was allowed:
                ``ServiceUnreachableError`` if no attempt reached the
                service, ``AnswerLostError`` if one may have.
            InsecureResponseError: an unsealed answer was not allowed.
        """
        call = self.call
        while True:
            remaining = call.deadline.remaining()
            if remaining <= 0:
                raise call.deadline.exceeded(sent=self.sent)
            instance = self._choose()
            read = self._read_timeout(remaining)
            self.attempts += 1
            self.balancer.start(instance.url)
            try:
                response = self.transport.send_attempt(
                    call, instance.url, (min(call.connect, remaining), read), self.current
                )
            except AttemptFailed as failure:
                self.sent = self.sent or not failure.not_run
                self._after_failure(instance, failure)
                continue
            except InsecureResponseError as exc:
                self.sent = True
                # An intermediary's unsealed 502/503/504 is retried like the
                # service's own; its body is never returned.
                if not (call.may_repeat and exc.status in call.policy.retry.retry_statuses):
                    raise
                self._after_unsealed(instance, exc)
                continue
            finally:
                self.balancer.finish(instance.url)
            self.balancer.readmit(instance.url)
            self.sent = True
            if not self._retry_answer(instance, response):
                return check_answer(call, response)

    def _read_timeout(self, remaining: float) -> float:
        """Return this attempt's read timeout.

        ``TimeoutPolicy.attempt`` when set (capped by what is left). Otherwise
        a call that may be repeated gives each attempt left an equal share of
        what is left, the last one all of it, so that an instance that hangs
        costs a share of the deadline and the call fails over; a call that may
        not be repeated has one attempt to wait for, so it gets it all.
        """
        per_try = self.call.policy.timeout.attempt
        if per_try is not None:
            return min(per_try, remaining)
        if not self.call.may_repeat:
            return remaining
        left = self.retry.total if isinstance(self.retry.total, int) else 0
        return remaining / (max(left, 0) + 1)

    def _choose(self) -> Instance:
        instance = self.balancer.choose(self.instances, self.tried)
        kind = "first"
        if self.tried:
            previous = self.tried[-1]
            fields = {
                "mscomm.target": self.call.service,
                "mscomm.instance": instance.url,
                "mscomm.attempt": self.attempts + 1,
                "mscomm.reason": self.why,
                "mscomm.backoff": self.pause,
                "mscomm.request_id": self.call.request_id,
            }
            if instance.url != previous:
                kind = "failover"
                fields.update({"mscomm.event": "failover", "mscomm.from": previous})
                log.info(
                    "failover service=%s instance=%s from=%s attempt=%d reason=%s"
                    " backoff=%.3fs request_id=%s",
                    self.call.service, instance.url, previous, self.attempts + 1, self.why,
                    self.pause, self.call.request_id, extra=fields,
                )  # fmt: skip
            else:
                kind = "retry"
                fields["mscomm.event"] = "retry"
                log.info(
                    "retry service=%s instance=%s attempt=%d reason=%s backoff=%.3fs"
                    " request_id=%s",
                    self.call.service, instance.url, self.attempts + 1, self.why, self.pause,
                    self.call.request_id, extra=fields,
                )  # fmt: skip
        self.tried.append(instance.url)
        self.current = self.record.attempt(instance.url, self.attempts + 1, kind, self.why)
        return instance

    def _after_failure(self, instance: Instance, failure: AttemptFailed) -> None:
        call = self.call
        if failure.connect_phase or (failure.reason in _TIMED_OUT and len(self.instances) > 1):
            # Refused, or hung (or trickling) past the attempt's share: later
            # calls avoid it for a while too, while another instance remains.
            self.balancer.eject(instance.url)
        if self.clock() >= call.deadline.at:
            raise call.deadline.exceeded(sent=self.sent) from failure.cause
        if not (failure.not_run or call.may_repeat):
            self._unavailable(failure)
        # urllib3's Retry counts the attempt and knows its kind by the error's type.
        error = ConnectTimeoutError(failure.reason) if failure.not_run else ProtocolError()
        try:
            self.retry = self.retry.increment(call.method, instance.url, error=error)
        except MaxRetryError:
            self._unavailable(failure)
        delay = self._backoff() if failure.retry_after is None else failure.retry_after
        if self.clock() + delay >= call.deadline.at:
            raise call.deadline.exceeded(sent=self.sent) from failure.cause
        if not failure.refused and not self._spend():
            self._unavailable(failure)
        self._pause(failure.reason, delay)

    def _after_unsealed(self, instance: Instance, exc: InsecureResponseError) -> None:
        try:
            self.retry = self.retry.increment(self.call.method, instance.url)
        except MaxRetryError:
            raise exc from None
        delay = self._backoff()
        if self.clock() + delay >= self.call.deadline.at or not self._spend():
            raise exc
        self._pause(f"unsealed status {exc.status}", delay)

    def _retry_answer(self, instance: Instance, response: Response) -> bool:
        call = self.call
        status = response.status_code
        retry_after = header_value(response.headers, "retry-after")  # sealed, in v2
        has_retry_after = retry_after is not None
        retryable = in_progress(call, response) or self.retry.is_retry(
            call.method, status, has_retry_after
        )
        if not (call.may_repeat and retryable):
            return False
        try:
            self.retry = self.retry.increment(call.method, instance.url, response=response.raw)
        except MaxRetryError:
            return False
        delay = self._backoff()
        if call.policy.retry.respect_retry_after and retry_after is not None:
            with contextlib.suppress(InvalidHeader):  # keep the backoff
                delay = self.retry.parse_retry_after(retry_after)
        if self.clock() + delay >= call.deadline.at or not self._spend():
            return False
        response.close()
        self._pause(f"status {status}", delay)
        return True

    def _backoff(self) -> float:
        return self.call.policy.retry.backoff(len(self.retry.history), self.random)

    def _spend(self) -> bool:
        if self.budget.try_spend():
            return True
        log.warning(
            "retry budget spent service=%s attempt=%d request_id=%s",
            self.call.service, self.attempts, self.call.request_id,
            extra={"mscomm.event": "budget spent", "mscomm.target": self.call.service,
                   "mscomm.attempt": self.attempts, "mscomm.request_id": self.call.request_id},
        )  # fmt: skip
        return False

    def _pause(self, reason: str, delay: float) -> None:
        # The retry is logged by _choose, once its instance is known.
        self.why = reason
        self.pause = delay
        self.sleep(delay)

    def _unavailable(self, failure: AttemptFailed) -> NoReturn:
        kind = AnswerLostError if self.sent else ServiceUnreachableError
        raise kind(
            self.call.service, self.attempts, failure.cause, reason=failure.reason
        ) from failure.cause
