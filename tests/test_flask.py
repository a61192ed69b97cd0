"""mscomm_sync.flask: a real Flask app behind the middleware, under a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask, request
from support.sealing import keyring, open_reply, send

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.flask import MscommState, caller_required, current_caller, init_app
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware


def create_app(**options: object) -> Flask:
    """A small Flask service configured the way users configure it."""
    app = Flask("billing")
    app.config.update(
        MSCOMM_SERVICE_NAME="billing",
        MSCOMM_KEYRING=keyring(),
        MSCOMM_REPLAY_STORE=MemoryReplayStore(),
        MSCOMM_EXEMPT_PATHS=("/health",),
    )

    @app.post("/api/v1/charge")
    def charge() -> dict[str, object]:
        return {"amount": request.get_json()["amount"], "caller": current_caller()}

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"ok": True, "caller": current_caller()}

    @app.get("/only-shipping")
    @caller_required("shipping")
    def only_shipping() -> str:
        return "hello shipping"

    @app.get("/missing")
    def missing() -> str:
        return "never"

    init_app(app, **options)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(create_app()) as live:
        yield live


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_view_gets_json_and_caller(server: LiveServer, session: requests.Session) -> None:
    """A sealed JSON POST reaches the view as JSON, with current_caller() set."""
    call = send(session, server.url + "/api/v1/charge", body=b'{"amount": 42}')
    assert call.response.status_code == 200
    assert open_reply(call).body == b'{"amount":42,"caller":"orders"}\n'


def test_flask_404_is_sealed(server: LiveServer, session: requests.Session) -> None:
    """Flask's own 404 page for a sealed request is sealed."""
    call = send(session, server.url + "/nowhere", method="GET", content_type=None)
    assert call.response.status_code == 404
    assert b"Not Found" in open_reply(call).body


def test_health_is_plaintext_without_caller(server: LiveServer, session: requests.Session) -> None:
    """The exempt health route answers plaintext with current_caller() None."""
    response = session.get(server.url + "/health", timeout=30)
    assert response.json() == {"ok": True, "caller": None}


def test_caller_required_refuses_other_callers(
    server: LiveServer, session: requests.Session
) -> None:
    """A view guarded for shipping answers orders with a sealed 403."""
    call = send(session, server.url + "/only-shipping", method="GET", content_type=None)
    assert call.response.status_code == 403
    open_reply(call)


def test_caller_required_admits_named_caller(server: LiveServer, session: requests.Session) -> None:
    """A view guarded for shipping answers shipping."""
    call = send(
        session, server.url + "/only-shipping", method="GET", content_type=None, sender="shipping"
    )
    assert open_reply(call, receiver="shipping").body == b"hello shipping"


def test_state_lives_in_extensions_not_config() -> None:
    """init_app keeps its middleware in app.extensions["mscomm_sync"] and wraps wsgi_app."""
    app = create_app()
    state = app.extensions["mscomm_sync"]
    assert isinstance(state, MscommState)
    assert app.wsgi_app is state.middleware
    assert isinstance(state.middleware, EncryptionMiddleware)


def test_keyword_options_override_config() -> None:
    """An option passed to init_app wins over app.config["MSCOMM_*"]."""
    app = create_app(allowed_callers=["shipping"], replay_window=5)
    options = app.extensions["mscomm_sync"].middleware.options
    assert options.allowed_callers == frozenset({"shipping"})
    assert options.replay_window == 5
    assert options.service_name == "billing"


def test_init_app_twice_is_refused() -> None:
    """Calling init_app a second time on one app raises ConfigurationError."""
    app = create_app()
    with pytest.raises(ConfigurationError, match="already"):
        init_app(app)


def test_unknown_option_is_refused() -> None:
    """A misspelt option raises ConfigurationError instead of being ignored."""
    with pytest.raises(ConfigurationError, match="encrypt_response"):
        create_app(encrypt_response=False)


def test_invalid_config_value_is_refused() -> None:
    """An invalid value in app.config is reported at init_app."""
    app = Flask("billing")
    app.config.update(MSCOMM_SERVICE_NAME="billing", MSCOMM_KEYRING=keyring())
    app.config["MSCOMM_MAX_BODY_SIZE"] = -1
    with pytest.raises(ConfigurationError, match="max_body_size"):
        init_app(app)


def test_project_client_calls_flask_view(server: LiveServer, tmp_path: Path) -> None:
    """MicroServiceClient's sealed call reaches the Flask view and opens its sealed answer."""
    from mscomm_sync.client import MicroServiceClient
    from mscomm_sync.registry import FileRegistry

    registry = FileRegistry(tmp_path / "registry.json")
    registry.register("billing", server.url)
    with MicroServiceClient("orders", registry=registry, keyring=keyring()) as client:
        response = client.request(
            target_service="billing",
            endpoint="/api/v1/charge",
            method="POST",
            payload={"amount": 42},
            timeout=10,
        )
        head = client.request(target_service="billing", endpoint="/only-shipping", method="HEAD")
    assert (response.status_code, response.json()) == (200, {"amount": 42, "caller": "orders"})
    assert head.status_code == 403


def test_project_client_gets_rejection_error(tmp_path: Path) -> None:
    """A caller outside allowed_callers gets RequestRejectedError(403) from the client."""
    from mscomm_sync.client import MicroServiceClient
    from mscomm_sync.errors import RequestRejectedError
    from mscomm_sync.registry import FileRegistry

    registry = FileRegistry(tmp_path / "registry.json")
    with LiveServer(create_app(allowed_callers=["shipping"])) as live:
        registry.register("billing", live.url)
        client = MicroServiceClient("orders", registry=registry, keyring=keyring())
        with client, pytest.raises(RequestRejectedError) as info:
            client.request(target_service="billing", endpoint="/api/v1/charge", method="POST")
    assert (info.value.service, info.value.status) == ("billing", 403)


class MethodOverride:
    """The well-known Flask snippet: an override header replaces the method."""

    KEYS = ("HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD", "HTTP_X_METHOD_OVERRIDE")

    def __init__(self, app: object) -> None:
        self.app = app

    def __call__(self, environ: dict[str, object], start_response: object) -> object:
        for key in self.KEYS:
            override = environ.get(key)
            if isinstance(override, str) and override.upper() in {"DELETE", "PUT", "PATCH"}:
                environ["REQUEST_METHOD"] = override.upper()
        return self.app(environ, start_response)  # type: ignore[operator]


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_never_reach_the_app(
    session: requests.Session, header: str
) -> None:
    """A method-override header added on the path to a sealed GET is dropped before the app,
    so an app using the override snippet still runs the GET that was sealed."""
    app = Flask("billing")

    @app.route("/notes/1", methods=["GET", "DELETE"])
    def note() -> dict[str, object]:
        return {"method": request.method}

    app.wsgi_app = MethodOverride(app.wsgi_app)  # type: ignore[method-assign]
    init_app(app, service_name="billing", keyring=keyring(), replay_store=MemoryReplayStore())
    with LiveServer(app) as live:
        call = send(
            session, live.url + "/notes/1", method="GET", content_type=None,
            headers={header: "DELETE"},
        )  # fmt: skip
        assert call.response.status_code == 200
        assert open_reply(call).body == b'{"method":"GET"}\n'
