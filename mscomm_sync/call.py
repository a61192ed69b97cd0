"""The call loop: deadline, breaker, instance choice, retries and failover.

Which layer does what:

* this loop, run by the mounted :class:`~mscomm_sync.adapter.ServiceAdapter`,
  owns the deadline, the breaker, instance choice, the retry budget and the
  pauses; a urllib3 ``Retry`` built from the :class:`RetryPolicy` counts the
  attempts, decides which statuses are retryable and parses ``Retry-After``;
* every attempt is sealed afresh and sent once through ``HTTPAdapter.send``.

A failure before the connection was established (refused, connect timeout,
name resolution) proves the request was never sent, so it is retried for any
method, on another instance where one exists. Any later failure (read
timeout, reset, even on a reused keep-alive connection) may have reached the
server, so it is retried only when the call may be repeated: an idempotent
method, or ``idempotent=True``.
"""

from __future__ import annotations

import logging
import os
import random as _random
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Union
from urllib.parse import urlsplit

import requests
from requests import PreparedRequest, Response
from requests.utils import get_environ_proxies
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from .adapter import HEADER_REQUEST_ID
from .balancer import PowerOfTwoBalancer
from .breaker import CircuitBreaker, Listener
from .budget import RetryBudget
from .envelope import Envelope
from .errors import (
    DeadlineExceededError,
    RequestRejectedError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from .policies import CallPolicy
from .registry.base import Instance, Registry

if TYPE_CHECKING:
    from .adapter import Cert, ServiceAdapter, Timeout

__all__ = ["ServiceCaller", "is_connect_phase"]

log = logging.getLogger("mscomm_sync.client")


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


class ServiceCaller:
    """Runs calls for one client; holds its per-target breakers and budgets.

    Args:
        envelope: returns the calling service's envelope (built lazily).
        registry: returns the registry (looked up at call time).
        policy_for: returns the :class:`CallPolicy` of a target service.
        balancer: picks instances.
        clock: a monotonic clock.
        sleep: pauses between attempts.
        random: floats in ``[0, 1)`` for jitter.
        listener: observes breaker transitions.
        trust_env: read proxy and CA settings from the environment.
    """

    def __init__(
        self,
        *,
        envelope: Callable[[], Envelope],
        registry: Callable[[], Registry],
        policy_for: Callable[[str], CallPolicy],
        balancer: PowerOfTwoBalancer,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        listener: Optional[Listener] = None,
        trust_env: Callable[[], bool] = lambda: True,
    ) -> None:
        self._envelope = envelope
        self._registry = registry
        self._policy_for = policy_for
        self.balancer = balancer
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._listener = listener
        self._trust_env = trust_env
        self._breakers: dict[str, CircuitBreaker] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._env: dict[str, tuple[dict[str, str], Union[bool, str]]] = {}
        self._lock = threading.Lock()

    def breaker(self, service: str) -> CircuitBreaker:
        """Return the breaker of ``service`` (created on first use)."""
        found = self._breakers.get(service)
        if found is not None:
            return found
        with self._lock:
            if service not in self._breakers:
                self._breakers[service] = CircuitBreaker(
                    service,
                    self._policy_for(service).breaker,
                    clock=self._clock,
                    random=self._random,
                    listener=self._listener,
                )
            return self._breakers[service]

    def budget(self, service: str) -> RetryBudget:
        """Return the retry budget of ``service`` (created on first use)."""
        found = self._budgets.get(service)
        if found is not None:
            return found
        with self._lock:
            if service not in self._budgets:
                self._budgets[service] = RetryBudget(
                    service, self._policy_for(service).budget, clock=self._clock
                )
            return self._budgets[service]

    def call(
        self,
        adapter: ServiceAdapter,
        request: PreparedRequest,
        *,
        timeout: Timeout,
        idempotent: Optional[bool],
        verify: Union[bool, str],
        cert: Cert,
    ) -> Response:
        """Run one call to ``mscomm://<service>/<path>``.

        Returns:
            The service's opened answer (HTTP error statuses included).

        Raises:
            CircuitOpenError: the target's circuit is open; nothing was sent.
            ServiceNotFoundError: the registry has no instance of the target.
            DeadlineExceededError: the deadline passed.
            ServiceUnavailableError: the attempts failed at the transport level.
            RequestRejectedError: the peer's middleware refused the request.
            IntegrityError: an answer failed verification (or was unsealed).
        """
        parts = urlsplit(request.url or "")
        service = parts.hostname or ""
        path = parts.path or "/"
        suffix = f"{path}?{parts.query}" if parts.query else path
        policy = self._policy_for(service)
        connect = policy.timeout.connect
        deadline_s = policy.timeout.deadline
        if isinstance(timeout, tuple):
            connect = timeout[0] if timeout[0] is not None else connect
            deadline_s = timeout[1] if timeout[1] is not None else deadline_s
        elif timeout is not None:
            deadline_s = timeout
        deadline = self._clock() + deadline_s
        if HEADER_REQUEST_ID not in request.headers:
            request.headers[HEADER_REQUEST_ID] = os.urandom(8).hex()
        breaker = self.breaker(service)
        probe = breaker.acquire()
        try:
            response = self._attempts(
                adapter, request, service, suffix, policy, connect, deadline, deadline_s,
                idempotent, verify, cert,
            )  # fmt: skip
        except (ServiceUnavailableError, DeadlineExceededError) as exc:
            breaker.record_failure(probe, exc)
            raise
        except RequestRejectedError:
            breaker.record_success(probe)
            raise
        except BaseException:
            breaker.release(probe)
            raise
        if response.status_code >= 500:
            breaker.record_failure(probe)
        else:
            breaker.record_success(probe)
        return response

    def _attempts(
        self,
        adapter: ServiceAdapter,
        request: PreparedRequest,
        service: str,
        suffix: str,
        policy: CallPolicy,
        connect: float,
        deadline: float,
        deadline_s: float,
        idempotent: Optional[bool],
        verify: Union[bool, str],
        cert: Cert,
    ) -> Response:
        instances = self._registry().get_instances(service)
        if not instances:
            raise ServiceNotFoundError(service)
        if not any(i.healthy for i in instances):
            log.warning("every instance of service=%s is marked unhealthy; trying anyway", service)
        envelope = self._envelope()
        method = (request.method or "GET").upper()
        may_repeat = (
            idempotent if idempotent is not None else method in policy.retry.idempotent_methods
        )
        retry: Retry = policy.retry.to_urllib3()
        budget = self.budget(service)
        budget.record_call()
        tried: list[str] = []
        attempts = 0
        while True:
            instance = self.balancer.choose(instances, tried)
            if tried and instance.url != tried[-1]:
                log.info(
                    "failover service=%s from=%s to=%s attempt=%d",
                    service, tried[-1], instance.url, attempts + 1,
                )  # fmt: skip
            tried.append(instance.url)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceededError(service, deadline_s)
            read = remaining if policy.timeout.attempt is None else min(
                policy.timeout.attempt, remaining
            )  # fmt: skip
            attempts += 1
            try:
                response = self._send(
                    adapter, request, instance, suffix, envelope, service, policy,
                    (min(connect, remaining), read), verify, cert,
                )  # fmt: skip
            except requests.RequestException as exc:
                connect_phase = is_connect_phase(exc)
                if connect_phase:
                    self.balancer.eject(instance.url)
                if self._clock() >= deadline:
                    raise DeadlineExceededError(service, deadline_s) from exc
                reason = type(exc).__name__
                if not (connect_phase or may_repeat):
                    raise ServiceUnavailableError(service, attempts, exc) from exc
                try:
                    retry = retry.increment(method, instance.url, error=_as_urllib3(exc))
                except MaxRetryError:
                    raise ServiceUnavailableError(service, attempts, exc) from exc
                if not connect_phase and not budget.try_spend():
                    log.warning("retry budget spent for service=%s attempt=%d", service, attempts)
                    raise ServiceUnavailableError(service, attempts, exc) from exc
                delay = policy.retry.backoff(len(retry.history), self._random)
                if self._clock() + delay >= deadline:
                    raise DeadlineExceededError(service, deadline_s) from exc
                log.info(
                    "retry service=%s instance=%s attempt=%d reason=%s backoff=%.3fs",
                    service, instance.url, attempts, reason, delay,
                )  # fmt: skip
                self._sleep(delay)
                continue
            self.balancer.readmit(instance.url)
            status = response.status_code
            raw = response.raw
            has_retry_after = "Retry-After" in response.headers
            if not (may_repeat and retry.is_retry(method, status, has_retry_after)):
                return response
            try:
                retry = retry.increment(method, instance.url, response=raw)
            except MaxRetryError:
                return response
            delay = policy.retry.backoff(len(retry.history), self._random)
            after = retry.get_retry_after(raw) if policy.retry.respect_retry_after else None
            if after is not None:
                delay = after
            if self._clock() + delay >= deadline:
                return response
            if not budget.try_spend():
                log.warning("retry budget spent for service=%s attempt=%d", service, attempts)
                return response
            response.close()
            log.info(
                "retry service=%s instance=%s attempt=%d reason=status %d backoff=%.3fs",
                service, instance.url, attempts, status, delay,
            )  # fmt: skip
            self._sleep(delay)

    def _send(
        self,
        adapter: ServiceAdapter,
        request: PreparedRequest,
        instance: Instance,
        suffix: str,
        envelope: Envelope,
        service: str,
        policy: CallPolicy,
        timeout: tuple[float, float],
        verify: Union[bool, str],
        cert: Cert,
    ) -> Response:
        proxies, env_verify = self._environment(instance.url)
        attempt = request.copy()
        attempt.url = instance.url.rstrip("/") + suffix
        self.balancer.start(instance.url)
        try:
            return adapter.send_attempt(
                attempt,
                envelope=envelope,
                service=service,
                timeout=timeout,
                verify=env_verify if verify is True else verify,
                cert=cert,
                proxies=proxies,
                allow_plaintext=policy.allow_plaintext_replies,
            )
        finally:
            self.balancer.finish(instance.url)

    def _environment(self, base_url: str) -> tuple[dict[str, str], Union[bool, str]]:
        # requests re-reads proxies, netrc and CA settings from the environment
        # on every call; an instance's settings are read once and cached.
        found = self._env.get(base_url)
        if found is not None:
            return found
        proxies: dict[str, str] = {}
        verify: Union[bool, str] = True
        if self._trust_env():
            proxies = dict(get_environ_proxies(base_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle if bundle else True
        self._env[base_url] = (proxies, verify)
        return proxies, verify

    def __repr__(self) -> str:
        return f"<ServiceCaller targets={sorted(self._breakers)!r}>"


def _as_urllib3(exc: BaseException) -> Exception:
    if is_connect_phase(exc):
        return ConnectTimeoutError(str(exc))
    return ProtocolError(str(exc))
