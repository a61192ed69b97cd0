"""mscomm_sync.django: a real minimal Django project behind the middleware, under gunicorn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.gunicorn import GunicornServer
from support.sealing import KEYS, keyring, open_reply, send

from mscomm_sync import FileRegistry, MicroServiceClient
from mscomm_sync.keyring import env_var_name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    env = {env_var_name(name): key for name, key in KEYS.items()}
    env["MSCOMM_REPLAY_DB"] = str(tmp_path_factory.mktemp("django") / "replay.table")
    env["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    with GunicornServer(
        "django_project.wsgi:application", workers=2, env=env, ready_path="/health/"
    ) as live:
        yield live


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_view_reads_caller_from_meta(server: GunicornServer, session: requests.Session) -> None:
    """A sealed POST reaches the view, which reads request.META["mscomm.caller"]."""
    call = send(session, server.url + "/api/v1/charge/", body=b'{"amount": 7}')
    assert call.response.status_code == 200
    assert json.loads(open_reply(call).body) == {"amount": 7, "caller": "orders"}


def test_health_is_plaintext(server: GunicornServer, session: requests.Session) -> None:
    """The exempt health view answers a plaintext request without a caller."""
    assert session.get(server.url + "/health/", timeout=30).json() == {"ok": True, "caller": None}


def test_plaintext_to_view_is_refused(server: GunicornServer, session: requests.Session) -> None:
    """A plaintext request to a protected view gets 401 before Django runs."""
    response = session.post(server.url + "/api/v1/charge/", json={"amount": 1}, timeout=30)
    assert response.status_code == 401


def test_caller_required_refuses_other_callers(
    server: GunicornServer, session: requests.Session
) -> None:
    """A view guarded for shipping answers orders with a sealed 403."""
    call = send(session, server.url + "/only-shipping/", method="GET", content_type=None)
    assert call.response.status_code == 403
    assert json.loads(open_reply(call).body) == {"error": "forbidden"}


def test_caller_required_admits_named_caller(
    server: GunicornServer, session: requests.Session
) -> None:
    """A view guarded for shipping answers shipping."""
    call = send(
        session, server.url + "/only-shipping/", method="GET", content_type=None, sender="shipping"
    )
    assert open_reply(call, receiver="shipping").body == b"hello shipping"


def test_django_500_is_sealed_without_traceback(
    server: GunicornServer, session: requests.Session
) -> None:
    """A failing view gives a sealed 500 that holds no traceback."""
    call = send(session, server.url + "/boom/", method="GET", content_type=None)
    assert call.response.status_code == 500
    assert b"secret-traceback-marker" not in open_reply(call).body


def test_no_content_view_verifies(server: GunicornServer, session: requests.Session) -> None:
    """A 204 from Django carries no body under gunicorn and still verifies."""
    call = send(session, server.url + "/nothing/", method="DELETE")
    assert call.response.status_code == 204
    assert open_reply(call).body == b""


def test_head_verifies_under_gunicorn(server: GunicornServer, session: requests.Session) -> None:
    """A HEAD answered by Django under gunicorn carries no body and still verifies."""
    call = send(session, server.url + "/health/", method="HEAD", content_type=None)
    assert call.response.status_code == 200
    assert call.response.content == b""
    assert open_reply(call).content_type == "application/json"


def test_unknown_settings_key_is_refused() -> None:
    """An unknown key in settings.MSCOMM is reported, not ignored."""
    from django.conf import settings
    from django.test import override_settings

    from mscomm_sync.django import settings_options
    from mscomm_sync.errors import ConfigurationError

    if not settings.configured:
        settings.configure()
    misspelt = override_settings(MSCOMM={"service_name": "billing", "encrypt_response": False})
    with misspelt, pytest.raises(ConfigurationError, match="encrypt_response"):
        settings_options()


@pytest.fixture
def client(server: GunicornServer, tmp_path: Path) -> Iterator[MicroServiceClient]:
    """The project's own client, as orders, finding billing in a temporary FileRegistry."""
    registry = FileRegistry(tmp_path / "registry.json")
    registry.register("billing", server.url)
    with MicroServiceClient("orders", registry=registry, keyring=keyring()) as live:
        yield live


def test_project_client_calls_django_view(client: MicroServiceClient) -> None:
    """MicroServiceClient's sealed call reaches the view, which sees META["mscomm.caller"]."""
    response = client.request(
        target_service="billing",
        endpoint="/api/v1/charge/",
        method="POST",
        payload={"amount": 9},
        timeout=10,
    )
    assert (response.status_code, response.json()) == (200, {"amount": 9, "caller": "orders"})


def test_project_client_gets_caller_required_403(client: MicroServiceClient) -> None:
    """A view guarded for shipping answers the client, calling as orders, with a sealed 403."""
    response = client.request(
        target_service="billing", endpoint="/only-shipping/", method="GET", timeout=10
    )
    assert (response.status_code, response.json()) == (403, {"error": "forbidden"})
