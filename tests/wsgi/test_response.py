"""What comes back from a sealed request: every status, streams, HEAD, 204, 304, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.seal import seal_fields
from support.sealing import keyring, open_reply, send

from mscomm_sync.envelope import HEADER_SEAL, HEADER_SEALED_BODY
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

# A well-formed seal header an app might (wrongly) set itself.
APP_SEAL = f"v=1;kid={'0' * 16};ts=0;id={'0' * 32};ct={'A' * 22}"


class Closing:
    """A streamed body that records whether the server closed it."""

    closed = 0

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        Closing.closed += 1


def routes(environ: dict[str, Any], start_response: Any) -> Any:
    """A small app with one route per response shape under test."""
    path = environ["PATH_INFO"]
    if path == "/teapot":
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"short and stout"]
    if path == "/broken":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down"]
    if path == "/boom":
        raise RuntimeError("secret-traceback-marker")
    if path == "/boom-late":

        def late() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial"
            raise RuntimeError("secret-traceback-marker")

        return late()
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"one,", b"two,", b"three"])
    if path == "/empty":
        start_response("204 No Content", [("X-Kept", "yes")])
        return []
    if path == "/cached":
        start_response("304 Not Modified", [("ETag", '"v1"')])
        return []
    if path == "/headers":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Content-Encoding", "gzip"),
                ("Content-Length", "999"),
                ("X-Encrypted-Payload", "false"),
                (HEADER_SEAL, APP_SEAL),
                (HEADER_SEALED_BODY, "AAAA"),
                ("Set-Cookie", "a=b"),
            ],
        )
        return [b"body"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written,")
        return [b"returned"]
    if path == "/bad-status":
        start_response("OK", [])
        return [b"x"]
    if path == "/no-start":
        return [b"x"]
    if path == "/text-chunk":
        start_response("200 OK", [])
        return ["text, not bytes"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"GET body that HEAD must not carry"]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    app = EncryptionMiddleware(
        routes, "billing", keyring=keyring(), replay_store=MemoryReplayStore()
    )
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_client_error_status_is_sealed(server: LiveServer, session: requests.Session) -> None:
    """A 4xx from the app arrives sealed with its status and body."""
    call = send(session, server.url + "/teapot")
    assert call.response.status_code == 418
    assert open_reply(call).body == b"short and stout"


def test_server_error_status_is_sealed(server: LiveServer, session: requests.Session) -> None:
    """A 5xx from the app arrives sealed with its status and body."""
    call = send(session, server.url + "/broken")
    assert call.response.status_code == 503
    assert open_reply(call).body == b"down"


def test_app_exception_gives_sealed_500_without_traceback(
    server: LiveServer, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the app is a sealed 500 whose body holds no traceback; the log has it."""
    with caplog.at_level(logging.ERROR, logger="mscomm_sync.wsgi"):
        call = send(session, server.url + "/boom")
    assert call.response.status_code == 500
    assert b"secret-traceback-marker" not in call.response.content
    assert json.loads(open_reply(call).body) == {"error": "internal server error"}
    assert any("secret-traceback-marker" in r.exc_text for r in caplog.records if r.exc_text)


def test_exception_while_streaming_gives_sealed_500(
    server: LiveServer, session: requests.Session
) -> None:
    """An app that fails mid-stream still produces a sealed 500, not a partial body."""
    call = send(session, server.url + "/boom-late")
    assert call.response.status_code == 500
    assert b"partial" not in open_reply(call).body


@pytest.mark.parametrize("path", ["/bad-status", "/no-start", "/text-chunk"])
def test_broken_wsgi_contract_gives_sealed_500(
    server: LiveServer, session: requests.Session, path: str
) -> None:
    """An app that breaks the WSGI contract gets a sealed 500, like an exception."""
    call = send(session, server.url + path)
    assert call.response.status_code == 500
    assert json.loads(open_reply(call).body) == {"error": "internal server error"}


def test_streamed_response_is_collected_sealed_and_closed(
    server: LiveServer, session: requests.Session
) -> None:
    """A streamed body is sealed whole, and the app's iterable is closed."""
    before = Closing.closed
    call = send(session, server.url + "/stream")
    assert open_reply(call).body == b"one,two,three"
    assert Closing.closed == before + 1


def test_write_callable_output_is_sealed(server: LiveServer, session: requests.Session) -> None:
    """Bytes passed to the legacy write() callable are sealed before the returned body."""
    call = send(session, server.url + "/write")
    assert open_reply(call).body == b"written,returned"


def test_head_response_has_no_body_and_verifies(
    server: LiveServer, session: requests.Session
) -> None:
    """HEAD gets no body; its seal travels in a header and opens to an empty body."""
    call = send(session, server.url + "/page", method="HEAD", content_type=None)
    assert call.response.status_code == 200
    assert call.response.content == b""
    assert HEADER_SEALED_BODY in call.response.headers
    opened = open_reply(call)
    assert opened.body == b""
    assert opened.content_type == "text/plain"


def test_no_content_response_has_no_body_and_verifies(
    server: LiveServer, session: requests.Session
) -> None:
    """A 204 carries no body and no Content-Length, and still verifies."""
    call = send(session, server.url + "/empty", method="DELETE")
    assert call.response.status_code == 204
    assert call.response.content == b""
    assert "Content-Length" not in call.response.headers
    assert call.response.headers["X-Kept"] == "yes"
    assert open_reply(call).body == b""


def test_not_modified_response_has_no_body_and_verifies(
    server: LiveServer, session: requests.Session
) -> None:
    """A 304 carries no body, keeps its ETag, and still verifies."""
    call = send(session, server.url + "/cached", method="GET", content_type=None)
    assert call.response.status_code == 304
    assert call.response.content == b""
    assert call.response.headers["ETag"] == '"v1"'
    assert open_reply(call).body == b""


def test_body_and_envelope_headers_of_app_are_replaced(
    server: LiveServer, session: requests.Session
) -> None:
    """The app's Content-*, and any envelope header it set, never reach the wire."""
    call = send(session, server.url + "/headers")
    headers = call.response.headers
    assert "Content-Encoding" not in headers
    assert headers["Content-Length"] == str(len(call.response.content))
    assert headers["X-Encrypted-Payload"] == "true"
    assert HEADER_SEALED_BODY not in headers
    fields = seal_fields(headers[HEADER_SEAL])  # exactly one seal: requests joins repeats
    assert fields["id"] != "0" * 32 and fields["kid"] != "0" * 16
    assert headers[HEADER_SEAL] != APP_SEAL
    assert headers["Set-Cookie"] == "a=b"
    assert open_reply(call).body == b"body"


def test_plaintext_answers_when_encrypt_responses_is_false(session: requests.Session) -> None:
    """encrypt_responses=False answers a verified sealed request in plaintext."""
    app = EncryptionMiddleware(
        routes,
        "billing",
        encrypt_responses=False,
        keyring=keyring(),
        replay_store=MemoryReplayStore(),
    )
    with LiveServer(app) as live:
        call = send(session, live.url + "/teapot")
    assert call.response.status_code == 418
    assert call.response.content == b"short and stout"
    assert "X-Encrypted-Payload" not in call.response.headers


def test_unsealable_answer_is_unsealed_500_without_details(session: requests.Session) -> None:
    """When the service's own key becomes unusable, the answer is a bare unsealed 500."""
    from support.sealing import KEYS

    from mscomm_sync.keyring import Keyring, env_var_name

    environ = {env_var_name(name): key for name, key in KEYS.items()}
    ring = Keyring(environ=environ)
    app = EncryptionMiddleware(routes, "billing", keyring=ring, replay_store=MemoryReplayStore())
    environ[env_var_name("billing")] = "not-a-key"
    ring.reload()
    with LiveServer(app) as live:
        call = send(session, live.url + "/teapot")
    assert call.response.status_code == 500
    assert call.response.json() == {"error": "internal server error"}
    assert "X-Encrypted-Payload" not in call.response.headers
