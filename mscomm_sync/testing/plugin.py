"""pytest fixtures for code that uses mscomm_sync; registered through ``pytest11``.

Installing the package is enough: pytest loads this module in every run, so it
imports nothing heavy at module level. Flask, werkzeug, ``responses`` and the
client are imported inside the fixtures that need them.

Fixtures (each documented below; see ``docs/testing.md``):

* ``mscomm_keys``: fresh keys (v2 pairs, and v1 shared keys) exported for
  the services a test names;
* ``mscomm_registry``: a registry in a temporary file, made the default;
* ``mscomm_service``: a real sealed service on 127.0.0.1 from any WSGI app;
* ``mscomm_responses``: the started ``responses`` mock the mocked services use;
* ``mscomm_mock``: a mocked remote service that seals its replies;
* ``mscomm_client``: a :class:`~mscomm_sync.client.MicroServiceClient` on
  the temporary registry, closed afterwards.

The ini option ``mscomm_key_versions`` (``1 2`` by default) chooses which
protocol versions ``mscomm_keys`` makes keys for: ``2`` alone for a suite
that means to run without shared keys, ``1`` alone for one written for v1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    import responses

    from ..client import MicroServiceClient
    from ..registry.backend import BaseRegistry
    from .keys import KeyFactory
    from .mock import ServiceMock
    from .service import SealedService

__all__ = [
    "mscomm_client",
    "mscomm_keys",
    "mscomm_mock",
    "mscomm_registry",
    "mscomm_responses",
    "mscomm_service",
]

#: Requests to these hosts reach the real network even while services are
#: mocked, so real services (``mscomm_service``) keep working beside mocks.
LOOPBACK = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?(?:[/?#]|\Z)")
#: The ini option naming the protocol versions ``mscomm_keys`` makes keys for.
KEY_VERSIONS_INI = "mscomm_key_versions"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``mscomm_key_versions`` ini option."""
    parser.addini(
        KEY_VERSIONS_INI,
        type="args",
        default=["1", "2"],
        help="protocol versions mscomm_keys makes keys for: 2 (key pairs), 1 (shared keys) "
        "or both (the default)",
    )


@pytest.fixture
def mscomm_keys(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> KeyFactory:
    """Export fresh keys for each service a test names; return a Keyring of the v1 ones.

    ``mscomm_keys("orders", "billing")`` sets, for this test only and to new
    random keys, ``ORDERS_PRIVATE_KEY`` and ``ORDERS_PUBLIC_KEY`` (a v2 key
    pair), ``ORDERS_ENCRYPTION_KEY`` (a v1 shared key), and the same for
    billing, and returns a :class:`~mscomm_sync.keyring.Keyring` of the v1
    keys. Asking for a name again returns the same keys. The factory also
    keeps a trust file of the test's services (``mscomm_keys.fleet_file``).
    The environment is restored afterwards.
    """
    from .keys import KeyFactory

    listed = pytestconfig.getini(KEY_VERSIONS_INI)
    versions = [v.strip() for item in listed for v in item.split(",") if v.strip()]
    fleet = tmp_path_factory.mktemp("mscomm-keys") / "trust.json"
    return KeyFactory(setenv=monkeypatch.setenv, versions=versions, fleet_file=fleet)


@pytest.fixture
def mscomm_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BaseRegistry]:
    """A file registry in a temporary directory, made the process default.

    Clients built without ``registry=`` use it, and ``MSCOMM_REGISTRY`` points
    at its file, so processes the test starts find the same services. It
    replaces any default registry; afterwards it is closed and there is none.
    """
    from ..registry import initialize_registry, reset_registry

    path = tmp_path_factory.mktemp("mscomm") / "registry.json"
    monkeypatch.setenv("MSCOMM_REGISTRY", str(path))
    registry = initialize_registry(path)
    try:
        yield registry
    finally:
        reset_registry()


@pytest.fixture
def mscomm_service(
    mscomm_keys: KeyFactory, mscomm_registry: BaseRegistry
) -> Iterator[Callable[..., SealedService]]:
    """Start a real sealed service from any WSGI app, on 127.0.0.1, registered.

    ``mscomm_service("billing", app, **options)`` makes keys for
    ``billing``, wraps ``app`` in ``EncryptionMiddleware`` (``options`` go to
    the middleware, e.g. ``allowed_callers=["orders"]``), serves it on a
    free port with a real threaded HTTP server, registers it in
    ``mscomm_registry`` and returns the running
    :class:`~mscomm_sync.testing.service.SealedService`. Unless ``trust`` is
    given, the service trusts the test's fleet file: every service
    ``mscomm_keys`` made keys for, before or after this one started, may
    call it (``allowed_callers`` narrows that). Call it twice with one name
    for two instances. Each is deregistered and stopped afterwards.
    """
    from .service import SealedService

    started: list[SealedService] = []

    def start(name: str, app: Any, **options: Any) -> SealedService:
        mscomm_keys(name)
        if "trust" not in options:
            options["trust"] = mscomm_keys.fleet_trust()
        service = SealedService(name, app, registry=mscomm_registry, **options).start()
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in reversed(started):
            service.stop()


@pytest.fixture
def mscomm_responses() -> Iterator[responses.RequestsMock]:
    """The started ``responses.RequestsMock`` that mocked services live on.

    Add your own plain-URL mocks to it rather than starting a second
    ``responses`` mock, which would hide this one. Requests to 127.0.0.1 and
    localhost pass through to the network; any other unmatched request fails
    with a ``ConnectionError``.
    """
    try:
        import responses
    except ImportError as exc:  # pragma: no cover - responses is in the dev extra
        raise ImportError("mscomm_mock needs the responses package: pip install responses") from exc

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(LOOPBACK)
        yield mock


@pytest.fixture
def mscomm_mock(
    mscomm_keys: KeyFactory,
    mscomm_registry: BaseRegistry,
    mscomm_responses: responses.RequestsMock,
) -> Iterator[Callable[..., ServiceMock]]:
    """Mock a remote service that opens sealed requests and seals its replies.

    ``mscomm_mock("billing", instances=1)`` makes keys for ``billing``,
    registers the service under a fake URL (``http://billing.mscomm.test``)
    and returns a :class:`~mscomm_sync.testing.mock.ServiceMock`. Add routes
    with ``.add(method, path, json=... | handler=...)``, inject transport
    failures with ``.fail(times, kind=...)``, and inspect ``.calls``. The
    client under test runs its real sealing, retry and verification code;
    no server runs. Everything is removed afterwards.
    """
    from .mock import ServiceMock

    made: list[ServiceMock] = []

    def start(name: str, **options: Any) -> ServiceMock:
        mscomm_keys(name)
        service = ServiceMock(
            name, mock=mscomm_responses, registry=mscomm_registry, **options
        ).start()
        made.append(service)
        return service

    try:
        yield start
    finally:
        for service in reversed(made):
            service.stop()


@pytest.fixture
def mscomm_client(
    mscomm_keys: KeyFactory, mscomm_registry: BaseRegistry
) -> Iterator[Callable[..., MicroServiceClient]]:
    """Make clients that call services in ``mscomm_registry``; closed afterwards.

    ``mscomm_client("orders", **options)`` makes keys for ``orders`` and
    returns a :class:`~mscomm_sync.client.MicroServiceClient` named
    ``orders`` on the temporary registry (``options`` go to the client,
    e.g. ``policy=...``).
    """
    from ..client import MicroServiceClient

    made: list[MicroServiceClient] = []

    def make(name: str = "test-client", **options: Any) -> MicroServiceClient:
        mscomm_keys(name)
        options.setdefault("registry", mscomm_registry)
        client = MicroServiceClient(name, **options)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
