"""Frozen, validated settings for calls to a service.

Every policy is an ``@attrs.frozen(kw_only=True)`` value checked when it is
built (a bad value raises :class:`~mscomm_sync.errors.ConfigurationError`,
which is also a ``ValueError``, naming the field); make variants with
:func:`attrs.evolve`. ``0`` is always a real
setting, never a stand-in for "use the default". A client holds one
:class:`CallPolicy` for every target and may hold overrides per target
service.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import attrs
from urllib3.util.retry import Retry

from .._fast import memo
from ..errors import ConfigurationError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEADLINE",
    "DEFAULT_IDEMPOTENT_METHODS",
    "DEFAULT_MAX_ANSWER_SIZE",
    "DEFAULT_RETRY_STATUSES",
    "BreakerPolicy",
    "BudgetPolicy",
    "CallPolicy",
    "RetryPolicy",
    "TimeoutPolicy",
]

DEFAULT_DEADLINE = 10.0
DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
DEFAULT_RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The largest answer body (plaintext) a client accepts.
DEFAULT_MAX_ANSWER_SIZE = 64 * 1024 * 1024


def _invalid(attr: attrs.Attribute[Any], rule: str) -> ConfigurationError:
    return ConfigurationError(f"{attr.name} must be {rule}", variable=attr.name, reason="invalid")


def _non_negative(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(attr, "a number")
    if not math.isfinite(value) or value < 0:
        raise _invalid(attr, f"a finite number >= 0, not {value!r}")


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    _non_negative(_inst, attr, value)
    if value == 0:
        raise _invalid(attr, "> 0")


def _fraction(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    _non_negative(_inst, attr, value)
    if value > 1:
        raise _invalid(attr, f"between 0 and 1, not {value!r}")


def _count(_inst: Any, attr: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(attr, f"an integer >= 0, not {value!r}")


def _upper(values: Any) -> frozenset[str]:
    return frozenset(str(v).upper() for v in values)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often a call is retried.

    Attributes:
        retries: retries after the first attempt (``0`` disables them).
        backoff_base: the first backoff in seconds; it doubles per retry.
        backoff_max: the longest single backoff, before the deadline cap.
        jitter: the random share of each backoff, 0 to 1. The default 0.5 is
            "equal jitter": a backoff is between half and all of its nominal
            value, so it is never zero unless ``backoff_base`` is.
        retry_statuses: answers worth another attempt (idempotent calls only).
        idempotent_methods: methods retried after a failure that may have
            reached the server.
        respect_retry_after: honour ``Retry-After`` (capped by the deadline).
    """

    retries: int = attrs.field(default=2, validator=_count)
    backoff_base: float = attrs.field(default=0.05, validator=_non_negative)
    backoff_max: float = attrs.field(default=2.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_fraction)
    retry_statuses: frozenset[int] = attrs.field(
        default=DEFAULT_RETRY_STATUSES, converter=frozenset
    )
    idempotent_methods: frozenset[str] = attrs.field(
        default=DEFAULT_IDEMPOTENT_METHODS, converter=_upper
    )
    respect_retry_after: bool = True

    def backoff(self, retry_number: int, random: Callable[[], float]) -> float:
        """Return the pause before retry ``retry_number`` (1 for the first).

        Args:
            retry_number: which retry this is, starting at 1.
            random: a source of floats in ``[0, 1)``.

        Returns:
            Seconds to wait: ``min(backoff_max, backoff_base * 2**(n-1))``
            with its ``jitter`` share drawn at random.
        """
        nominal = min(self.backoff_max, self.backoff_base * (2.0 ** max(retry_number - 1, 0)))
        return nominal * (1.0 - self.jitter) + nominal * self.jitter * random()

    def to_urllib3(self) -> Retry:
        """Return the urllib3 ``Retry`` that counts and classifies attempts.

        The call loop asks it which failures and statuses are retryable for
        the method and increments it per attempt; backoff comes from
        :meth:`backoff` instead, because urllib3's first backoff is zero.
        Whether a method may be repeated is decided by the call loop (it
        knows ``idempotent=``), so every method is allowed here.

        The same object is returned for equal policies: a ``Retry`` is never
        changed (``increment`` returns a new one), and building one costs
        more than a call's own set-up.
        """
        return _urllib3_retry(self)


@memo(64)
def _urllib3_retry(policy: RetryPolicy) -> Retry:
    return Retry(
        total=policy.retries,
        connect=None,
        read=None,
        status=None,
        other=0,
        redirect=False,
        allowed_methods=None,
        status_forcelist=policy.retry_statuses,
        backoff_factor=0,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=policy.respect_retry_after,
    )


@attrs.frozen(kw_only=True)
class TimeoutPolicy:
    """How long a call may take.

    Attributes:
        deadline: seconds for the whole call: resolution, every attempt and
            every backoff.
        connect: the connect timeout of one attempt (capped by what is left
            of the deadline).
        attempt: the read timeout of one attempt, or ``None`` for whatever is
            left of the deadline.
    """

    deadline: float = attrs.field(default=DEFAULT_DEADLINE, validator=_positive)
    connect: float = attrs.field(default=DEFAULT_CONNECT_TIMEOUT, validator=_positive)
    attempt: Optional[float] = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """When a target's circuit opens and for how long.

    Attributes:
        failure_threshold: consecutive failed calls that open the circuit;
            ``0`` disables the breaker.
        recovery_timeout: seconds the circuit stays open before one probe;
            ``0`` lets a probe through at once.
        jitter: each open period is ``recovery_timeout`` times a random
            factor in ``[1 - jitter, 1 + jitter]``, so clients that opened
            together do not probe together.
    """

    failure_threshold: int = attrs.field(default=5, validator=_count)
    recovery_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.1, validator=_fraction)


@attrs.frozen(kw_only=True)
class BudgetPolicy:
    """How many retries a target may get, relative to its traffic.

    Attributes:
        ratio: retries allowed per call in the window (0.2 = 20%).
        window: the sliding window in seconds.
        min_per_second: retries allowed per second whatever the traffic, so
            a quiet client can still retry.
    """

    ratio: float = attrs.field(default=0.2, validator=_non_negative)
    window: float = attrs.field(default=10.0, validator=_positive)
    min_per_second: float = attrs.field(default=10.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class CallPolicy:
    """Everything that governs calls to one target service.

    Attributes:
        retry: retries and backoff.
        timeout: the deadline and per-attempt timeouts.
        breaker: the circuit breaker.
        budget: the retry budget.
        max_answer_size: the largest answer body accepted from this target,
            in bytes (plaintext; a sealed one may be 16 bytes longer). A
            declared larger one is refused before it is read, and one
            without a declared length is read no further than this.
        allow_plaintext_replies: accept unsealed answers from this target.
            A weakening, off by default: it matches a service running its
            middleware with ``encrypt_responses=False``, and lets anyone on
            the path forge that service's answers.
    """

    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout: TimeoutPolicy = attrs.field(factory=TimeoutPolicy)
    breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy)
    budget: BudgetPolicy = attrs.field(factory=BudgetPolicy)
    max_answer_size: int = attrs.field(default=DEFAULT_MAX_ANSWER_SIZE, validator=_count)
    allow_plaintext_replies: bool = False
