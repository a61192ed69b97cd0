"""MicroServiceClient: a ``requests.Session`` that calls services by name.

Trust model: instance addresses come from the registry and are not trusted;
every call is sealed for the target service and every answer must open under
that service's key for that very request (see
:mod:`mscomm_sync.client.transport`).
Plain URLs (``http://``, ``https://``) are not sealed at all: for them this is
an ordinary Session.
"""

from __future__ import annotations

import copy
import os
import random as _random
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union, cast

import requests
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri

from ..envelope import HEADER_ENCRYPTED, Envelope
from ..errors import ConfigurationError
from ..forking import PerProcess
from ..idempotency.wire import HEADER_IDEMPOTENCY_KEY, validate_key
from ..keyring import Keyring, validate_service_name
from ..registry.base import Registry
from ..telemetry.instruments import Instruments
from ..telemetry.options import Telemetry, TelemetryOption, resolve
from ..telemetry.process import process_instruments
from ..trust.identity import Identity
from ..trust.store import TrustStore
from .adapter import ServiceAdapter
from .breaker import CircuitBreaker, Listener
from .call import SCHEME, Timeout
from .headers import header_pairs
from .payload import Params, encode_payload, with_query
from .policies import DEFAULT_MAX_ANSWER_SIZE, CallPolicy
from .transport import DEFAULT_POOL_MAXSIZE

__all__ = ["MicroServiceClient"]

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

#: What a client keeps besides the Session's state (see __getstate__).
_SETTINGS = (
    "service_name",
    "policy",
    "policies",
    "_registry",
    "_keyring",
    "_identity",
    "_trust",
    "_listener",
    "_pool_maxsize",
    "_clock",
    "_sleep",
    "_random",
    "_telemetry",
)
#: The settings a deep copy shares with the original instead of copying.
_SHARED = (
    "_registry",
    "_keyring",
    "_identity",
    "_trust",
    "_listener",
    "_clock",
    "_sleep",
    "_random",
    "_telemetry",
)


class MicroServiceClient(requests.Session):
    """A Session whose service calls are sealed, retried and load-balanced.

    Call a service by name with the service form of :meth:`request`, or with
    a ``mscomm://<service>/<path>`` URL through any Session method. Every
    other URL is handled exactly as by :class:`requests.Session`.

    Args:
        service_name: this service's name (it seals as this sender);
            defaults to the ``SERVICE_NAME`` environment variable.
        registry: where instances are found; defaults to
            :func:`mscomm_sync.registry.get_registry`, looked up at call time.
        keyring: protocol v1's shared keys; defaults to the environment.
        identity: protocol v2's private keys of this service; defaults to
            the environment (``<NAME>_PRIVATE_KEY``).
        trust: protocol v2's public keys of the services called; defaults to
            ``$MSCOMM_TRUST`` and ``<NAME>_PUBLIC_KEY``.
        policy: the :class:`CallPolicy` for every target.
        policies: per-target overrides of ``policy``.
        breaker_listener: called as ``listener(breaker, old, new)`` after
            every breaker transition.
        pool_maxsize: connections kept per instance.
        clock: a monotonic clock (deadlines, breakers, budgets).
        sleep: pauses between attempts.
        random: floats in ``[0, 1)`` (jitter, instance choice).
        telemetry: what the calls report: a :class:`~mscomm_sync.Telemetry`,
            ``True`` (OpenTelemetry, with the global providers), ``False``
            (nothing), or ``None``: the process's default
            (:func:`~mscomm_sync.initialize_telemetry`, else
            ``$MSCOMM_TELEMETRY`` and ``$MSCOMM_ACCESS_LOG``).

    Raises:
        ConfigurationError: no service name, or an invalid one; invalid
            telemetry settings, or OpenTelemetry asked for and not installed.
    """

    def __init__(
        self,
        service_name: Optional[str] = None,
        *,
        registry: Optional[Registry] = None,
        keyring: Optional[Keyring] = None,
        identity: Optional[Identity] = None,
        trust: Optional[TrustStore] = None,
        policy: Optional[CallPolicy] = None,
        policies: Optional[Mapping[str, CallPolicy]] = None,
        breaker_listener: Optional[Listener] = None,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        telemetry: TelemetryOption = None,
    ) -> None:
        super().__init__()
        name = service_name if service_name is not None else os.environ.get("SERVICE_NAME")
        if name is None:
            raise ConfigurationError(
                "no service name: pass service_name or set SERVICE_NAME",
                variable="SERVICE_NAME",
                reason="missing",
            )
        self.service_name = validate_service_name(name)
        self.policy = policy if policy is not None else CallPolicy()
        self.policies: dict[str, CallPolicy] = dict(policies or {})
        self._registry = registry
        self._keyring = keyring
        self._identity = identity
        self._trust = trust
        self._listener = breaker_listener
        self._pool_maxsize = pool_maxsize
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._telemetry: Optional[Telemetry] = resolve(telemetry)
        if self._telemetry is None:
            process_instruments()  # a bad $MSCOMM_TELEMETRY fails here, not in a call
        self._start()

    def _start(self) -> None:
        """Mount the service adapter and begin this process's state (also when unpickled)."""
        self._envelope: Optional[Envelope] = None
        self.mount(
            SCHEME,
            ServiceAdapter(
                envelope=self._get_envelope,
                registry=self._get_registry,
                policy_for=self.policy_for,
                clock=self._clock,
                sleep=self._sleep,
                random=self._random,
                listener=self._listener,
                trust_env=self._trusts_env,
                pool_maxsize=self._pool_maxsize,
                telemetry=None if self._telemetry is None else Instruments(self._telemetry),
            ),
        )
        # After mount(): the adapters whose pools a forked child renews.
        self._pools: PerProcess[int] = PerProcess(self._fresh_pools)

    def _trusts_env(self) -> bool:
        return bool(self.trust_env)

    # -- copies and pickles --------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """The Session's state and this client's settings, never its keys or sockets.

        A copy or an unpickled client seals as the same service, with the
        same policies and registry; its keyring reads the environment again
        (a keyring built from a mapping refuses to be pickled), and its
        pools, breakers and budgets start afresh.
        """
        state: dict[str, Any] = dict(super().__getstate__())  # type: ignore[call-overload]
        state["adapters"] = OrderedDict(
            (prefix, a) for prefix, a in self.adapters.items() if not isinstance(a, ServiceAdapter)
        )
        state.update({name: getattr(self, name) for name in _SETTINGS})
        if self._random is _random.random:
            state["_random"] = None  # the module's generator, not a copy of its state
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> MicroServiceClient:
        # Headers, cookies, policies and mounted adapters are copied; the
        # registry, the keyring and the injected clock, sleep, randomness and
        # listener are shared, as they would be by two clients built alike.
        state = self.__getstate__()
        shared = {name: state.pop(name) for name in _SHARED}
        state = copy.deepcopy(state, memo)
        state.update(shared)
        other = type(self).__new__(type(self))
        other.__setstate__(state)
        return other

    def __setstate__(self, state: dict[str, Any]) -> None:
        settings = {name: state.pop(name) for name in _SETTINGS}
        requests.Session.__setstate__(self, state)  # type: ignore[attr-defined]
        for name, value in settings.items():
            setattr(self, name, value)
        if self._random is None:
            self._random = _random.random
        self._start()

    # -- the service form --------------------------------------------------

    def request(
        self,
        method: Optional[Union[str, bytes]] = None,
        url: Optional[Union[str, bytes]] = None,
        *args: Any,
        target_service: Optional[str] = None,
        endpoint: Optional[str] = None,
        payload: Any = None,
        idempotent: Optional[bool] = None,
        idempotency_key: Optional[str] = None,
        **kwargs: Any,
    ) -> Response:
        """Send a request: the service form, or requests' standard form.

        The service form is chosen by the ``target_service`` keyword::

            client.request(target_service="billing", endpoint="/api/v1/charge",
                           method="POST", payload={"amount": 42}, timeout=5)

        Args:
            method: the HTTP method (default ``GET`` in the service form).
            url: the URL (standard form only).
            target_service: the service to call.
            endpoint: the path on that service, e.g. ``/api/v1/charge``.
            payload: the body: ``bytes`` as is, ``str`` as UTF-8 text, any
                other value as JSON; ``None`` for no body.
            idempotent: allow (``True``) or forbid (``False``) retrying after
                a failure that may have reached the server; by default only
                GET, HEAD, PUT, DELETE, OPTIONS and TRACE may be retried.
            idempotency_key: a key naming this request, such as
                ``"charge-1001"``: sent sealed (protocol v2), so a service that
                honours keys runs it at most once however often it arrives;
                the call may then be retried whatever its method.
            **kwargs: service form: ``params``, ``headers``, ``timeout`` (the
                call's deadline in seconds). Standard form: as in requests.

        Returns:
            The response; in the service form its content is the opened
            plaintext and its status the service's.

        Raises:
            CircuitOpenError: the target's circuit is open; nothing was sent.
            ServiceNotFoundError: nothing is registered under the name.
            DeadlineExceededError: the deadline passed.
            ServiceUnavailableError: every attempt failed at the transport level.
            RequestRejectedError: the peer's middleware refused the request.
            IntegrityError: an answer failed verification, or was unsealed
                (:class:`InsecureResponseError`) when that is not allowed.
        """
        if target_service is None and endpoint is None and payload is None:
            if isinstance(url, str) and url.lower().startswith(SCHEME):
                # requests leaves non-HTTP URLs alone: quote and add params here.
                url = with_query(requote_uri(url), kwargs.pop("params", None))
            if idempotent is not None or idempotency_key is not None:
                raise TypeError(
                    "idempotent= and idempotency_key= are only accepted by the service form"
                    " (send an Idempotency-Key header instead)"
                )
            return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        if url is not None or args:
            raise TypeError("the service form takes keywords only, not a url")
        if target_service is None or endpoint is None:
            raise TypeError("the service form needs both target_service and endpoint")
        verb = method.decode("ascii") if isinstance(method, bytes) else (method or "GET")
        return self.call(
            target_service,
            endpoint,
            verb,
            payload,
            idempotent=idempotent,
            idempotency_key=idempotency_key,
            **kwargs,
        )

    def call(
        self,
        target_service: str,
        endpoint: str,
        method: str = "GET",
        payload: Any = None,
        *,
        params: Params = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Timeout = None,
        idempotent: Optional[bool] = None,
        idempotency_key: Optional[str] = None,
    ) -> Response:
        """Call ``endpoint`` on ``target_service``; the service form of :meth:`request`.

        It skips the Session machinery a sealed call does not use (cookies,
        auth, netrc, redirects, hooks, per-call environment reads) and hands
        the request to the adapter mounted on ``mscomm://``.

        Args:
            target_service: the service to call.
            endpoint: the path on that service.
            method: the HTTP method.
            payload: the body (see :meth:`request`).
            params: query parameters.
            headers: extra headers; they override the Session's defaults.
            timeout: the call's deadline in seconds, or ``(connect, deadline)``.
            idempotent: allow or forbid repeating the call (see :meth:`request`).
            idempotency_key: the key naming this request (see :meth:`request`).

        Returns:
            The opened response.

        Raises:
            MscommError: as :meth:`request`.
        """
        if _BAD_ESCAPE.search(endpoint):
            # requests would then escape every other "%" too, and send another path.
            raise ConfigurationError(
                "an endpoint's '%' must start an escape of two hex digits (write %25 for '%')",
                variable="endpoint",
                reason="invalid escape",
            )
        if not endpoint.startswith("/"):
            endpoint = "/" + endpoint
        url = with_query(f"{SCHEME}{target_service}{requote_uri(endpoint)}", params)
        merged: dict[str, str] = {}
        for k, v in header_pairs(cast(Mapping[str, str], self.headers)):
            if v is not None:
                merged[k] = v
        body, content_type = encode_payload(payload)
        if content_type is not None:
            merged["Content-Type"] = content_type
        if headers:
            merged.update(headers)  # case variants collapse below; later keys win
        if idempotency_key is not None:
            merged[HEADER_IDEMPOTENCY_KEY] = validate_key(idempotency_key) or ""
        prepared = PreparedRequest()
        prepared.method = method.upper()
        prepared.url = url
        prepared.headers = CaseInsensitiveDict(merged)
        prepared.body = body
        prepared.hooks = default_hooks()
        adapter = self.get_adapter(url)
        verify = self.verify if self.verify is not None else True
        if isinstance(adapter, ServiceAdapter):
            return adapter.send(
                prepared, timeout=timeout, verify=verify, cert=self.cert, idempotent=idempotent
            )
        return adapter.send(prepared, timeout=cast(Any, timeout), verify=verify, cert=self.cert)

    # -- state -------------------------------------------------------------

    def breaker(self, target_service: str) -> CircuitBreaker:
        """Return this client's circuit breaker for ``target_service``."""
        adapter = self.get_adapter(SCHEME)
        if not isinstance(adapter, ServiceAdapter):
            raise TypeError(f"the adapter mounted on {SCHEME} is not a ServiceAdapter")
        return adapter.breaker(target_service)

    def policy_for(self, target_service: str) -> CallPolicy:
        """Return the :class:`CallPolicy` in force for ``target_service``."""
        return self.policies.get(target_service, self.policy)

    def get_redirect_target(self, resp: Response) -> Optional[str]:
        """Return where to redirect; never for a sealed call.

        A service's redirect is returned to the caller, not followed: following
        it would resend the call's plaintext to a URL outside the envelope.
        """
        sent = resp.request
        if sent is not None and sent.headers.get(HEADER_ENCRYPTED) == "true":
            return None
        return super().get_redirect_target(resp)

    def get_adapter(self, url: str) -> BaseAdapter:
        """Return the adapter for ``url``, rebuilding pools after a fork."""
        self._pools.get()
        return super().get_adapter(url)

    def _fresh_pools(self) -> int:
        """Give every mounted ``HTTPAdapter`` new connection pools; return this process's id.

        Run once in each forked child (see :class:`~mscomm_sync.forking.PerProcess`):
        the parent's sockets are shared with it and every sibling, so a
        child must never send on one. The ``ServiceAdapter`` keeps its own
        per-process state the same way.
        """
        for adapter in self.adapters.values():
            if isinstance(adapter, HTTPAdapter):
                state: Any = adapter  # requests keeps the pool sizes in private attributes
                adapter.init_poolmanager(
                    state._pool_connections, state._pool_maxsize, block=state._pool_block
                )
                adapter.proxy_manager = {}
        return os.getpid()

    def _get_envelope(self) -> Envelope:
        if self._envelope is None:
            # The client's read limit (CallPolicy.max_answer_size) bounds answers
            # before they are opened; the envelope's own is the largest it allows.
            self._envelope = Envelope(
                self.service_name,
                keyring=self._keyring,
                identity=self._identity,
                trust=self._trust,
                max_body_size=DEFAULT_MAX_ANSWER_SIZE,
            )
        return self._envelope

    def _get_registry(self) -> Registry:
        if self._registry is not None:
            return self._registry
        from ..registry import get_registry  # at call time: the process default

        registry: Registry = get_registry()
        return registry

    def __repr__(self) -> str:
        return f"<MicroServiceClient service={self.service_name!r}>"
