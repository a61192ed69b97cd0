"""A mocked remote service that opens sealed requests and seals its replies.

It plugs into ``responses``, so the caller's real code runs unchanged: the
real :class:`~mscomm_sync.client.MicroServiceClient` resolves the service in
the registry, seals the request, retries, and opens the reply. On the mocked
side every request goes through :meth:`Envelope.open_request
<mscomm_sync.envelope.Envelope.open_request>` under the caller's key, exactly
as the middleware does (a request that fails verification gets the
middleware's unsealed 401), and every reply is sealed for that request with
:meth:`Envelope.seal_response <mscomm_sync.envelope.Envelope.seal_response>`.

A test can also make the mocked service fail the way a network does
(:meth:`ServiceMock.fail`), which ``responses`` alone cannot do per attempt,
or send a reply that is unsealed or tampered with, to check that the caller
refuses it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import urlsplit

import attrs
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from ..envelope import HEADER_ENCRYPTED, Envelope, target_from_url
from ..errors import IntegrityError
from ..keyring import Keyring, validate_service_name
from ..replay import MemoryReplayStore
from .faults import CONNECT_PHASE, FAULTS, transport_error
from .mock_routes import Route, RouteTable
from .mock_types import Handler, MockCall, MockReply, MockRequest, make_reply
from .mock_wire import Wire, plaintext, refused, sealed

if TYPE_CHECKING:
    import requests
    import responses

    from ..registry.base import Registry

__all__ = ["METHODS", "ServiceMock", "mock_url"]

#: The methods a mocked service answers.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def mock_url(name: str, index: int = 0) -> str:
    """Return the fake base URL of instance ``index`` of mocked service ``name``.

    The host is under ``.test``, a name reserved never to resolve, so a
    request that escapes the mock cannot reach a real host.
    """
    host = re.sub(r"[^a-z0-9-]", "-", name.lower())
    suffix = f"-{index + 1}" if index else ""
    return f"http://{host}{suffix}.mscomm.test"


@attrs.define
class _Fault:
    kind: str
    remaining: Optional[int]
    url: Optional[str]


class ServiceMock:
    """A remote service, mocked with ``responses``, that answers like the real one.

    Args:
        name: the mocked service's name; it opens requests and seals replies
            with this service's keys, read from the environment
            (``<NAME>_PRIVATE_KEY`` and the callers' ``<NAME>_PUBLIC_KEY``;
            for v1, ``<NAME>_ENCRYPTION_KEY``, or ``keyring``).
        mock: the started :class:`responses.RequestsMock` to add to.
        registry: where to register the instances; ``None`` registers nowhere.
        instances: how many instances, each with its own fake URL
            (:func:`mock_url`).
        keyring: keys of this service and its callers; defaults to the
            environment, read when a request arrives.
        exempt_paths: paths that plaintext requests may reach, as in the
            middleware; ``/health`` answers 200 unless a route overrides it.

    Attributes:
        urls: the instances' fake base URLs.
        calls: every request that reached the service, in order
            (:class:`~mscomm_sync.testing.mock_types.MockCall`).
        envelope: the service's side of the envelope.
        routes: its :class:`~mscomm_sync.testing.mock_routes.RouteTable`.

    Call :meth:`start` (the ``mscomm_mock`` fixture does) before use.
    """

    def __init__(
        self,
        name: str,
        *,
        mock: responses.RequestsMock,
        registry: Optional[Registry] = None,
        instances: int = 1,
        keyring: Optional[Keyring] = None,
        exempt_paths: tuple[str, ...] = ("/health",),
    ) -> None:
        if instances < 1:
            raise ValueError("a mocked service needs at least one instance")
        self.name = validate_service_name(name)
        self.urls = [mock_url(name, i) for i in range(instances)]
        self.calls: list[MockCall] = []
        self.envelope = Envelope(name, keyring=keyring, replay_store=MemoryReplayStore())
        self.exempt_paths = frozenset(exempt_paths)
        self.registry = registry
        self._mock = mock
        self.routes = RouteTable(self.exempt_paths)
        self._faults: list[_Fault] = []
        self._added: list[Any] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The first instance's base URL."""
        return self.urls[0]

    # -- set-up --------------------------------------------------------------

    def add(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: Union[bytes, str, None] = None,
        status: int = 200,
        content_type: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        handler: Optional[Handler] = None,
        seal: bool = True,
        tamper: bool = False,
    ) -> None:
        """Answer ``method path`` with a canned reply or a handler's.

        The most recently added matching route wins, so a test can override
        an earlier one.

        Args:
            method: the HTTP method.
            path: the exact path, without the query string.
            json: a canned body sent as JSON.
            body: a canned body (bytes, or text sent as UTF-8).
            status: the canned status.
            content_type: the canned body's ``Content-Type``.
            headers: further canned response headers.
            handler: called with the :class:`MockRequest`; its answer is used
                instead of the canned one (see :data:`mock_types.ReplyLike`).
            seal: ``False`` answers in plaintext, as a service whose
                middleware has ``encrypt_responses=False`` does.
            tamper: flip one byte of the sealed body, as an attacker on the
                path might; the caller must refuse the reply.
        """
        reply: Union[MockReply, Handler]
        if handler is not None:
            reply = handler
        else:
            reply = make_reply(
                status=status, json=json, body=body, content_type=content_type, headers=headers
            )
        self.routes.add(
            Route(method=method.upper(), path=path, reply=reply, seal=seal, tamper=tamper)
        )

    def fail(
        self, times: Optional[int] = 1, *, kind: str = "refused", url: Optional[str] = None
    ) -> None:
        """Make the next ``times`` requests fail at the transport level.

        ``"refused"`` and ``"connect_timeout"`` fail before the request
        reaches the service. ``"read_timeout"`` and ``"reset"`` fail after
        it: the request is delivered and handled (it appears in
        :attr:`calls` with its status), and the reply is lost, which is why a
        client must not repeat such a POST. Faults queue up in order.

        Args:
            times: how many requests fail; ``None`` for every one from now on
                (an instance that is down).
            kind: ``"refused"``, ``"connect_timeout"``, ``"read_timeout"``
                or ``"reset"`` (see :mod:`mscomm_sync.testing.faults`).
            url: fail only requests to this instance; ``None`` for any.

        Raises:
            ValueError: an unknown kind or instance, or a negative count.
        """
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: use one of {sorted(FAULTS)}")
        if times is not None and times < 0:
            raise ValueError("times must not be negative")
        if url is not None and url not in self.urls:
            raise ValueError(f"{url!r} is not an instance of {self.name!r}")
        with self._lock:
            self._faults.append(_Fault(kind, times, url))

    def clear_faults(self) -> None:
        """Forget every fault not yet spent: the service is reachable again."""
        with self._lock:
            self._faults.clear()

    def start(self) -> ServiceMock:
        """Add this service's routes to the mock and register every instance."""
        for url in self.urls:
            pattern = re.compile(re.escape(url) + r"(?:[/?#].*)?\Z")
            for method in METHODS:
                self._added.append(
                    self._mock.add_callback(
                        method, pattern, callback=self._answer, content_type=None
                    )
                )
        if self.registry is not None:
            for url in self.urls:
                self.registry.register(self.name, url)
        return self

    def stop(self) -> None:
        """Deregister every instance and remove this service from the mock."""
        if self.registry is not None:
            for url in self.urls:
                self.registry.deregister(self.name, url)
        for added in self._added:
            self._mock.remove(added)
        self._added.clear()

    # -- answering -------------------------------------------------------------

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, HTTPHeaderDict, bytes]:
        # Called by ``responses`` in place of sending ``request``.
        method = (request.method or "GET").upper()
        url = request.url or ""
        fault = self._take_fault(url)
        was_sealed = (request.headers.get(HEADER_ENCRYPTED) or "").lower() == "true"
        if fault in CONNECT_PHASE:  # it never reached the service
            self._record(
                MockCall(
                    method=method,
                    url=url,
                    request=None,
                    status=None,
                    fault=fault,
                    sealed=was_sealed,
                )
            )
            raise transport_error(fault, request)
        (status, headers, body), opened = self._serve(method, url, request, was_sealed)
        self._record(
            MockCall(
                method=method,
                url=url,
                request=opened,
                status=status,
                fault=fault,
                sealed=was_sealed,
            )
        )
        if fault is not None:  # handled, and the reply is lost on the way back
            raise transport_error(fault, request)
        return status, HTTPHeaderDict(headers), body

    def _serve(
        self, method: str, url: str, request: requests.PreparedRequest, was_sealed: bool
    ) -> tuple[Wire, Optional[MockRequest]]:
        raw = request.body or b""
        if isinstance(raw, (list, tuple)):  # a v2 sealed body is sent in its chunks
            raw = b"".join(raw)
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        headers = CaseInsensitiveDict(dict(request.headers))
        if not was_sealed:
            if (urlsplit(url).path or "/") not in self.exempt_paths:
                return refused(401), None
            plain = MockRequest.build(method, url, headers, data, headers.get("Content-Type"), None)
            return plaintext(self.routes.answer(plain)[1]), plain
        target = target_from_url(url)
        try:
            opened = self.envelope.open_request(
                method=method, target=target, headers=headers, body=data
            )
        except IntegrityError:
            return refused(401), None
        if opened.version == "2":  # the handler sees the sealed headers only, as an app does
            headers = CaseInsensitiveDict()
            for name, value in opened.headers:
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        plain = MockRequest.build(
            method, url, headers, opened.body, opened.content_type, opened.sender
        )
        route, reply = self.routes.answer(plain)
        if route is not None and not route.seal:
            return plaintext(reply), plain
        tamper = route is not None and route.tamper
        wire = sealed(
            self.envelope, opened, method=method, target=target, reply=reply, tamper=tamper
        )
        return wire, plain

    def _take_fault(self, url: str) -> Optional[str]:
        with self._lock:
            for fault in self._faults:
                if fault.url is not None and _base(url) != fault.url:
                    continue
                if fault.remaining == 0:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.kind
        return None

    def _record(self, call: MockCall) -> None:
        with self._lock:
            self.calls.append(call)

    def __repr__(self) -> str:
        return (
            f"<ServiceMock name={self.name!r} instances={len(self.urls)} calls={len(self.calls)}>"
        )


def _base(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
