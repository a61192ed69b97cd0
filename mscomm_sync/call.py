"""Calls to services: the breaker, resolution and the deadline around the attempts.

:class:`ServiceCaller` belongs to one client. It holds that client's breaker
and retry budget per target service (never shared between clients), resolves
the target's instances at call time, and hands the attempts to
:class:`~mscomm_sync.attempts.AttemptLoop`. The breaker sees one outcome per
call, after failover: one dead instance among live ones does not open it.
"""

from __future__ import annotations

import logging
import os
import random as _random
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Union
from urllib.parse import urlsplit

from requests import PreparedRequest, Response
from requests.utils import get_environ_proxies

from .adapter import HEADER_REQUEST_ID
from .attempts import AttemptLoop
from .balancer import PowerOfTwoBalancer
from .breaker import CircuitBreaker, Listener
from .budget import RetryBudget
from .deadline import Deadline
from .envelope import Envelope
from .errors import (
    DeadlineExceededError,
    InsecureResponseError,
    RequestRejectedError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from .keyring import validate_service_name
from .policies import CallPolicy
from .registry.base import Instance, Registry

if TYPE_CHECKING:
    from .adapter import Cert, ServiceAdapter, Timeout

__all__ = ["ServiceCaller"]

log = logging.getLogger("mscomm_sync.client")

#: Instances whose proxy and CA settings are remembered (then forgotten all at once).
_MAX_ENVIRONMENTS = 1024


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
        self._env: dict[tuple[str, bool], tuple[dict[str, str], Union[bool, str]]] = {}
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
            ConfigurationError: the target's name is not a valid service name.
            DeadlineExceededError: the deadline passed.
            ServiceUnavailableError: the attempts failed at the transport level.
            RequestRejectedError: the peer's middleware refused the request.
            IntegrityError: an answer failed verification (or was unsealed).
        """
        parts = urlsplit(request.url or "")
        service = validate_service_name(parts.netloc, what="target service")
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
        deadline = Deadline(
            service=service, at=self._clock() + deadline_s, seconds=deadline_s, clock=self._clock
        )
        if HEADER_REQUEST_ID not in request.headers:
            request.headers[HEADER_REQUEST_ID] = os.urandom(8).hex()
        breaker = self.breaker(service)
        probe = breaker.acquire()
        try:
            response = self._attempts(
                adapter, request, service, suffix, policy, connect, deadline, idempotent,
                verify, cert,
            )  # fmt: skip
        except (ServiceUnavailableError, DeadlineExceededError) as exc:
            breaker.record_failure(probe, exc)
            raise
        except RequestRejectedError:
            breaker.record_success(probe)
            raise
        except InsecureResponseError as exc:
            # An unsealed 5xx is an intermediary (or a crashed worker) saying
            # the service is down: a failure, as a sealed 5xx is. Any other
            # unsealed answer says nothing about the service's health.
            if exc.status is not None and exc.status >= 500:
                breaker.record_failure(probe, exc)
            else:
                breaker.release(probe)
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
        deadline: Deadline,
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
        budget = self.budget(service)
        budget.record_call()

        def send(instance: Instance, timeout: tuple[float, float]) -> Response:
            return self._send(
                adapter, request, instance, suffix, envelope, service, policy, timeout,
                deadline, verify, cert,
            )  # fmt: skip

        loop = AttemptLoop(
            service=service,
            method=method,
            instances=instances,
            policy=policy,
            may_repeat=(
                idempotent if idempotent is not None else method in policy.retry.idempotent_methods
            ),
            deadline=deadline.at,
            timeout=deadline.seconds,
            connect=connect,
            send=send,
            balancer=self.balancer,
            budget=budget,
            clock=self._clock,
            sleep=self._sleep,
            random=self._random,
            request_id=str(request.headers.get(HEADER_REQUEST_ID, "")),
        )
        return loop.run()

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
        deadline: Deadline,
        verify: Union[bool, str],
        cert: Cert,
    ) -> Response:
        proxies, env_verify = self._environment(instance.url)
        self.balancer.start(instance.url)
        try:
            return adapter.send_attempt(
                request,
                url=instance.url.rstrip("/") + suffix,
                envelope=envelope,
                service=service,
                timeout=timeout,
                verify=env_verify if verify is True else verify,
                cert=cert,
                proxies=proxies,
                allow_plaintext=policy.allow_plaintext_replies,
                deadline=deadline,
            )
        finally:
            self.balancer.finish(instance.url)

    def _environment(self, base_url: str) -> tuple[dict[str, str], Union[bool, str]]:
        # requests re-reads proxies, netrc and CA settings from the environment
        # on every call; an instance's settings are read once and cached.
        # Keyed by trust_env too, so turning it off (or on) later takes effect;
        # bounded, so a registry that churns through instances cannot grow it.
        trust = self._trust_env()
        found = self._env.get((base_url, trust))
        if found is not None:
            return found
        proxies: dict[str, str] = {}
        verify: Union[bool, str] = True
        if trust:
            proxies = dict(get_environ_proxies(base_url))
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle if bundle else True
        if len(self._env) >= _MAX_ENVIRONMENTS:
            self._env.clear()
        self._env[(base_url, trust)] = (proxies, verify)
        return proxies, verify

    def __repr__(self) -> str:
        return f"<ServiceCaller targets={sorted(self._breakers)!r}>"
