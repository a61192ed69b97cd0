"""The adapter mounted on ``mscomm://``: one whole call, as requests hands it over.

requests gives a prepared request to the adapter mounted for its URL, the way
it gives ``https://`` requests to an ``HTTPAdapter`` that owns urllib3's
retries. For ``mscomm://<service>/<path>`` that is :class:`ServiceAdapter`,
the hub of a call; it sends the call out to each spoke in turn and each
returns to it:

1. :func:`~mscomm_sync.client.call.plan_call` works out the call's fixed
   facts (target, policy, deadline);
2. the target's :class:`~mscomm_sync.client.breaker.CircuitBreaker` is asked
   for permission;
3. the registry resolves the target's instances;
4. :class:`~mscomm_sync.client.attempts.AttemptLoop` makes the attempts, each
   through :class:`~mscomm_sync.client.transport.SealedTransport`;
5. the breaker learns the call's one outcome, after failover: one dead
   instance among live ones does not open it.

Telemetry (:mod:`mscomm_sync.telemetry`) sees the whole call, breaker
included, as one record around these steps.

The adapter holds its client's breakers and retry budgets, per target
service (never shared between clients), and everything that belongs to one
process: connection pools, read buffers and requests in flight.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Callable, Optional, Union

from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

from ..envelope import Envelope
from ..errors import (
    DeadlineExceededError,
    DeadlineSpentOnArrivalError,
    IdempotencyError,
    InsecureResponseError,
    RequestRejectedError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from ..forking import PerProcess
from ..registry.base import Registry
from ..telemetry.calls import CallRecord, start_call
from ..telemetry.instruments import Instruments
from ..telemetry.process import process_instruments
from .attempts import AttemptLoop
from .balancer import PowerOfTwoBalancer
from .breaker import CircuitBreaker, Listener
from .budget import RetryBudget
from .call import SCHEME, Call, Cert, Timeout, plan_call
from .policies import CallPolicy
from .transport import DEFAULT_POOL_MAXSIZE, SealedTransport

__all__ = ["ServiceAdapter"]

log = logging.getLogger("mscomm_sync.client")


class ServiceAdapter(BaseAdapter):
    """Runs calls to ``mscomm://<service>/<path>``; mount it on ``mscomm://``.

    :class:`~mscomm_sync.client.MicroServiceClient` builds and mounts one.

    Args:
        envelope: returns the calling service's envelope (built lazily).
        registry: returns the registry (looked up at call time).
        policy_for: returns the :class:`CallPolicy` of a target service.
        clock: a monotonic clock.
        sleep: pauses between attempts.
        random: floats in ``[0, 1)`` for jitter and instance choice.
        listener: observes breaker transitions.
        trust_env: whether to read proxy and CA settings from the environment.
        pool_maxsize: connections kept per instance (size it to your threads).
        telemetry: what reports the calls; ``None``: the process's default
            (:func:`~mscomm_sync.initialize_telemetry`), looked up per call.
    """

    def __init__(
        self,
        *,
        envelope: Callable[[], Envelope],
        registry: Callable[[], Registry],
        policy_for: Callable[[str], CallPolicy],
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        random: Callable[[], float],
        listener: Optional[Listener] = None,
        trust_env: Callable[[], bool] = lambda: True,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        telemetry: Optional[Instruments] = None,
    ) -> None:
        super().__init__()
        self._envelope = envelope
        self._registry = registry
        self._policy_for = policy_for
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._listener = listener
        self._trust_env = trust_env
        self.pool_maxsize = pool_maxsize
        self._telemetry = telemetry
        # Sockets, locks other threads held, requests in flight and breaker
        # counts all belong to the process that made them: a forked child
        # gets its own, before any of its threads can use the parent's.
        self._process: PerProcess[_ProcessState] = PerProcess(self._new_process_state)

    def _new_process_state(self) -> _ProcessState:
        return _ProcessState(
            SealedTransport(pool_maxsize=self.pool_maxsize),
            PowerOfTwoBalancer(random=self._random, clock=self._clock),
        )

    @property
    def transport(self) -> SealedTransport:
        """This process's transport: its connection pools and read buffers."""
        return self._process.get().transport

    @property
    def balancer(self) -> PowerOfTwoBalancer:
        """This process's instance chooser (it counts requests in flight)."""
        return self._process.get().balancer

    # -- requests' adapter interface ----------------------------------------

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: Union[bool, str] = True,
        cert: Cert = None,
        proxies: Optional[Mapping[str, str]] = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        """Run a call to ``mscomm://<service>/<path>``.

        Args:
            request: the plaintext request.
            stream: ignored (a sealed body is read whole).
            timeout: the call's deadline in seconds, or ``(connect, deadline)``.
            verify: TLS verification, as in requests.
            cert: the client certificate, as in requests.
            proxies: ignored; each instance URL gets the environment's
                proxies (cached per instance).
            idempotent: ``True`` allows retrying any method after a failure
                that may have reached the server; ``False`` forbids it.

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
        if not (request.url or "").lower().startswith(SCHEME):
            raise ValueError(f"ServiceAdapter sends only {SCHEME} URLs")
        state = self._process.get()
        call = plan_call(
            request,
            timeout=timeout,
            idempotent=idempotent,
            verify=verify,
            cert=cert,
            trust_env=self._trust_env(),
            policy_for=self._policy_for,
            envelope=self._envelope(),
            clock=self._clock,
        )
        telemetry = self._telemetry if self._telemetry is not None else process_instruments()
        record = start_call(
            telemetry,
            service=call.envelope.service_name,
            target=call.service,
            method=call.method,
            path=call.target,
            request_id=call.request_id,
            clock=self._clock,
        )
        with record:
            response = self._guarded(call, state, record)
            record.answered(response.status_code)
        return response

    def _guarded(self, call: Call, state: _ProcessState, record: CallRecord) -> Response:
        """Run the call's attempts with the target's breaker's permission; tell it the outcome."""
        breaker = state.breaker(call.service, self._new_breaker)
        if record.otel is not None:
            record.breaker(breaker.state)
        probe = breaker.acquire()
        try:
            response = self._attempts(call, state, record)
        except DeadlineSpentOnArrivalError:
            # The service answered at once: what ran out was our caller's time.
            breaker.release(probe)
            raise
        except (ServiceUnavailableError, DeadlineExceededError) as exc:
            breaker.record_failure(probe, exc)
            raise
        except (RequestRejectedError, IdempotencyError):
            breaker.record_success(probe)  # the service answered, and soundly
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

    def close(self) -> None:
        """Close the connection pools and drop the kept read buffers."""
        self.transport.close()

    # -- the spokes -----------------------------------------------------------

    def _attempts(self, call: Call, state: _ProcessState, record: CallRecord) -> Response:
        registry = self._registry()
        instances = registry.get_instances(call.service)
        if not instances:
            # Which registry was read: the first thing to check (a registry is
            # any object with the protocol's methods; ours have a location).
            location = getattr(registry, "location", None)
            raise ServiceNotFoundError(
                call.service, location if isinstance(location, str) and location else None
            )
        for instance in instances:
            if instance.healthy:
                break
        else:
            log.warning(
                "every instance of service=%s is marked unhealthy; trying anyway", call.service,
                extra={"mscomm.event": "all unhealthy", "mscomm.target": call.service,
                       "mscomm.request_id": call.request_id},
            )  # fmt: skip
        budget = state.budget(call.service, self._new_budget)
        budget.record_call()
        loop = AttemptLoop(
            call, instances, state.transport, state.balancer, budget,
            self._clock, self._sleep, self._random, record,
        )  # fmt: skip
        return loop.run()

    def breaker(self, service: str) -> CircuitBreaker:
        """Return this process's breaker of ``service`` (created on first use)."""
        return self._process.get().breaker(service, self._new_breaker)

    def budget(self, service: str) -> RetryBudget:
        """Return this process's retry budget of ``service`` (created on first use)."""
        return self._process.get().budget(service, self._new_budget)

    def _new_breaker(self, service: str) -> CircuitBreaker:
        return CircuitBreaker(
            service,
            self._policy_for(service).breaker,
            clock=self._clock,
            random=self._random,
            listener=self._instruments().breaker_listener(self._listener),
        )

    def _instruments(self) -> Instruments:
        return self._telemetry if self._telemetry is not None else process_instruments()

    def _new_budget(self, service: str) -> RetryBudget:
        return RetryBudget(service, self._policy_for(service).budget, clock=self._clock)

    def __repr__(self) -> str:
        return f"<ServiceAdapter targets={sorted(self._process.get().breakers)!r}>"


class _ProcessState:
    """What one process's calls share: pools and buffers, in-flight counts, breakers, budgets."""

    def __init__(self, transport: SealedTransport, balancer: PowerOfTwoBalancer) -> None:
        self.transport = transport
        self.balancer = balancer
        self.breakers: dict[str, CircuitBreaker] = {}
        self.budgets: dict[str, RetryBudget] = {}
        self._lock = threading.Lock()

    def breaker(self, service: str, new: Callable[[str], CircuitBreaker]) -> CircuitBreaker:
        found = self.breakers.get(service)
        if found is None:
            with self._lock:
                found = self.breakers.get(service)
                if found is None:
                    found = self.breakers[service] = new(service)
        return found

    def budget(self, service: str, new: Callable[[str], RetryBudget]) -> RetryBudget:
        found = self.budgets.get(service)
        if found is None:
            with self._lock:
                found = self.budgets.get(service)
                if found is None:
                    found = self.budgets[service] = new(service)
        return found
