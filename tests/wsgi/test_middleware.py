"""EncryptionMiddleware under a real server: sealed in, sealed out, refusals."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.seal import seal_fields, with_seal_field
from support.sealing import keyring, open_reply, send

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware
from mscomm_sync.wsgi.options import MIDDLEWARE_OPTIONS

REFUSED_401 = {"error": "unauthorized"}


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with what the app saw: body, length, type, caller and headers."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = {
        "body": body.decode("utf-8", "replace"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "caller": environ.get("mscomm.caller"),
        "headers": sorted(k for k in environ if k.startswith("HTTP_")),
        "path": environ.get("PATH_INFO"),
    }
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


def middleware(app: Any = echo_app, **options: Any) -> EncryptionMiddleware:
    """Wrap ``app`` as the billing service with the test keys and a memory store."""
    options.setdefault("keyring", keyring())
    options.setdefault("replay_store", MemoryReplayStore())
    return EncryptionMiddleware(app, "billing", **options)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(middleware()) as live:
        yield live


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_sealed_request_reaches_app_as_plaintext(
    server: LiveServer, session: requests.Session
) -> None:
    """The app sees the plaintext body with its own length and content type."""
    call = send(session, server.url + "/charge", body=b'{"amount": 42}')
    seen = json.loads(open_reply(call).body)
    assert seen["body"] == '{"amount": 42}'
    assert seen["content_length"] == "14"
    assert seen["content_type"] == "application/json"


def test_app_sees_verified_caller(server: LiveServer, session: requests.Session) -> None:
    """environ["mscomm.caller"] holds the verified sender."""
    call = send(session, server.url + "/charge", sender="shipping")
    assert json.loads(open_reply(call, receiver="shipping").body)["caller"] == "shipping"


def test_envelope_headers_are_not_passed_to_app(
    server: LiveServer, session: requests.Session
) -> None:
    """No X-Encrypted-Payload, X-Encryption-Service or X-Mscomm-* header reaches the app."""
    call = send(session, server.url + "/charge", headers={"X-Request-Id": "abc"})
    headers = json.loads(open_reply(call).body)["headers"]
    assert "HTTP_X_REQUEST_ID" in headers
    assert not [h for h in headers if h.startswith(("HTTP_X_ENCRYPT", "HTTP_X_MSCOMM"))]


def test_response_is_sealed_and_bound_to_request(
    server: LiveServer, session: requests.Session
) -> None:
    """The answer is sealed: its body is not the plaintext, and it opens for this request."""
    call = send(session, server.url + "/charge", body=b"secret-marker")
    assert call.response.headers["X-Encrypted-Payload"] == "true"
    assert b"secret-marker" not in call.response.content
    assert open_reply(call).content_type == "application/json"


def test_tampered_body_is_refused_with_401(server: LiveServer, session: requests.Session) -> None:
    """Flipping a byte of the sealed body gives the fixed unsealed 401."""
    from support.sealing import prepare

    prepared, _, _ = prepare(server.url + "/charge", body=b"x" * 10)
    assert isinstance(prepared.body, bytes)
    prepared.body = bytes([prepared.body[0] ^ 1]) + prepared.body[1:]
    response = session.send(prepared, timeout=30)
    assert response.status_code == 401
    assert response.json() == REFUSED_401
    assert "X-Encrypted-Payload" not in response.headers


def test_plaintext_request_to_protected_path_is_refused(
    server: LiveServer, session: requests.Session
) -> None:
    """A plaintext request to a path that is not exempt gets 401."""
    response = session.post(server.url + "/charge", data=b"hi", timeout=30)
    assert response.status_code == 401
    assert response.json() == REFUSED_401


def test_plaintext_request_to_exempt_path_passes(
    server: LiveServer, session: requests.Session
) -> None:
    """A plaintext request to /health reaches the app and gets a plaintext answer."""
    response = session.get(server.url + "/health", timeout=30)
    assert response.status_code == 200
    assert response.json()["caller"] is None


def test_replayed_request_is_refused(server: LiveServer, session: requests.Session) -> None:
    """The second delivery of one sealed request gets 401."""
    from support.sealing import prepare

    prepared, _, _ = prepare(server.url + "/charge", body=b"once")
    assert session.send(prepared.copy(), timeout=30).status_code == 200
    assert session.send(prepared.copy(), timeout=30).status_code == 401


def test_refusal_reason_is_logged_without_plaintext(
    server: LiveServer, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """The log names the reason, sender, route and request id, never the body."""
    from support.sealing import prepare

    prepared, sealed, _ = prepare(
        server.url + "/charge", body=b"plain-marker", headers={"X-Request-Id": "req-7"}
    )
    prepared.headers.update(with_seal_field(prepared.headers, "ts", "1"))
    with caplog.at_level(logging.INFO, logger="mscomm_sync.wsgi"):
        assert session.send(prepared, timeout=30).status_code == 401
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "mscomm_sync.wsgi")
    assert "stale timestamp" in text
    assert "'orders'" in text
    # The key id and message id claimed in the (unverified) seal header are logged.
    kid = seal_fields(sealed.headers["X-Mscomm-Seal"])["kid"]
    assert f"kid='{kid}'" in text and f"id='{sealed.message_id}'" in text
    assert "/charge" in text and "req-7" in text
    assert "plain-marker" not in text


def test_missing_service_name_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without service_name or SERVICE_NAME, construction raises ConfigurationError."""
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    with pytest.raises(ConfigurationError, match="SERVICE_NAME"):
        EncryptionMiddleware(echo_app, keyring=keyring(), replay_store=MemoryReplayStore())


def test_service_name_defaults_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SERVICE_NAME names the service when service_name is not given."""
    monkeypatch.setenv("SERVICE_NAME", "billing")
    wrapped = EncryptionMiddleware(echo_app, keyring=keyring(), replay_store=MemoryReplayStore())
    assert wrapped.options.service_name == "billing"


def test_missing_own_key_is_a_configuration_error() -> None:
    """A service without a key fails at construction, naming the variable."""
    with pytest.raises(ConfigurationError, match="UNKNOWN_ENCRYPTION_KEY"):
        EncryptionMiddleware(
            echo_app, "unknown", keyring=keyring(), replay_store=MemoryReplayStore()
        )


def test_option_names_match_the_middleware_signature() -> None:
    """The options the Flask and Django glue accept are every keyword the middleware takes."""
    parameters = list(inspect.signature(EncryptionMiddleware).parameters)
    assert list(MIDDLEWARE_OPTIONS) == parameters[1:]


def test_zero_max_body_size_accepts_only_empty_bodies(session: requests.Session) -> None:
    """max_body_size=0 is a real setting: an empty sealed body passes, one byte is 413."""
    with LiveServer(middleware(max_body_size=0)) as live:
        empty = send(session, live.url + "/charge", body=b"")
        one = send(session, live.url + "/charge", body=b"x")
    assert (empty.response.status_code, one.response.status_code) == (200, 413)
