"""Refusals: 400, 401, 403 and 413, each unsealed, fixed, and without calling the app."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.inprocess import run
from support.seal import replace_seal_field
from support.sealing import keyring, open_reply, prepare, send
from werkzeug.test import EnvironBuilder

from mscomm_sync.envelope import target_from_environ
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

LIMIT = 1024


class Recorder:
    """A WSGI app that counts its calls and echoes the caller."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        body = json.dumps(
            {
                "caller": environ.get("mscomm.caller"),
                "service": environ.get("HTTP_X_ENCRYPTION_SERVICE"),
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


class Unreadable(io.RawIOBase):
    """A request stream that fails the test if anyone reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


class Counting(io.BytesIO):
    """A request stream that counts the bytes read from it."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def make(app: Recorder, **options: Any) -> EncryptionMiddleware:
    options.setdefault("keyring", keyring())
    options.setdefault("replay_store", MemoryReplayStore())
    options.setdefault("max_body_size", LIMIT)
    return EncryptionMiddleware(app, "billing", **options)


def sealed_environ(body: bytes = b"{}", **kwargs: Any) -> dict[str, Any]:
    """Return the environ of a validly sealed POST /charge from orders."""
    environ = EnvironBuilder(path="/charge", method="POST").get_environ()
    from mscomm_sync.envelope import Envelope

    sealed = Envelope("orders", keyring=keyring()).seal_request(
        recipient="billing", method="POST", target=target_from_environ(environ), body=body
    )
    headers = {k: v for k, v in sealed.headers.items() if k != "Content-Type"}
    builder = EnvironBuilder(
        path="/charge", method="POST", headers=list(headers.items()), data=sealed.body, **kwargs
    )
    return builder.get_environ()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_declared_length_above_limit_is_413_before_reading() -> None:
    """A Content-Length above the limit gets 413 without reading a byte."""
    app = Recorder()
    environ = sealed_environ()
    environ["CONTENT_LENGTH"] = str(LIMIT * 10)
    environ["wsgi.input"] = Unreadable()
    status, _, body = run(make(app), environ)
    assert (status, json.loads(body)) == (413, {"error": "payload too large"})
    assert app.calls == 0


def test_streamed_body_stops_once_past_limit() -> None:
    """A body without Content-Length is read only until it passes the limit."""
    app = Recorder()
    environ = sealed_environ()
    del environ["CONTENT_LENGTH"]
    stream = Counting(b"x" * (LIMIT * 1000))
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True})
    status, _, _ = run(make(app), environ)
    assert status == 413
    assert stream.consumed <= LIMIT + 16 + 1
    assert app.calls == 0


def test_chunked_body_above_limit_is_413_over_real_server(session: requests.Session) -> None:
    """A chunked upload larger than the limit gets 413 from a real server."""
    app = Recorder()
    prepared, _, _ = prepare("http://127.0.0.1/charge", body=b"x" * (LIMIT * 4))
    with LiveServer(make(app)) as live:
        chunks = iter([b"y" * 1024] * 8)
        response = session.post(
            live.url + "/charge",
            data=chunks,
            headers={k: v for k, v in prepared.headers.items() if k != "Content-Length"},
            timeout=30,
        )
    assert response.status_code == 413
    assert app.calls == 0


def test_declared_length_above_limit_is_413_over_real_server(session: requests.Session) -> None:
    """A sealed request whose body is over the limit gets 413 from a real server."""
    app = Recorder()
    with LiveServer(make(app)) as live:
        call = send(session, live.url + "/charge", body=b"x" * (LIMIT + 1))
    assert call.response.status_code == 413
    assert app.calls == 0


def test_body_at_limit_is_accepted(session: requests.Session) -> None:
    """A plaintext body of exactly max_body_size bytes is accepted."""
    app = Recorder()
    with LiveServer(make(app)) as live:
        call = send(session, live.url + "/charge", body=b"x" * LIMIT)
    assert call.response.status_code == 200
    assert app.calls == 1


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "+5", "٣", "99999999999999999999999"])
def test_malformed_content_length_is_400(length: str) -> None:
    """A Content-Length that is not a plain decimal number gets 400."""
    app = Recorder()
    environ = sealed_environ()
    environ["CONTENT_LENGTH"] = length
    status, _, body = run(make(app), environ)
    assert (status, json.loads(body)) == (400, {"error": "bad request"})
    assert app.calls == 0


def test_body_shorter_than_content_length_is_400() -> None:
    """A body that ends before its declared length gets 400."""
    app = Recorder()
    environ = sealed_environ()
    environ["CONTENT_LENGTH"] = str(int(environ["CONTENT_LENGTH"]) + 5)
    status, _, _ = run(make(app), environ)
    assert status == 400
    assert app.calls == 0


def test_caller_outside_allowed_callers_is_403(session: requests.Session) -> None:
    """A verified caller not in allowed_callers gets 403 and the app is not called."""
    app = Recorder()
    with LiveServer(make(app, allowed_callers=["shipping"])) as live:
        call = send(session, live.url + "/charge")
    assert call.response.status_code == 403
    assert call.response.json() == {"error": "forbidden"}
    assert app.calls == 0


def test_caller_in_allowed_callers_passes(session: requests.Session) -> None:
    """A verified caller in allowed_callers reaches the app."""
    app = Recorder()
    with LiveServer(make(app, allowed_callers=["orders"])) as live:
        call = send(session, live.url + "/charge")
    assert json.loads(open_reply(call).body)["caller"] == "orders"


@pytest.mark.parametrize("flag", ["false", "", "TRUE ", "yes"])
def test_any_sealed_flag_value_other_than_true_is_401(flag: str) -> None:
    """A request that carries X-Encrypted-Payload but not as "true" gets 401, not a pass."""
    app = Recorder()
    environ = sealed_environ()
    environ["HTTP_X_ENCRYPTED_PAYLOAD"] = flag
    status, _, _ = run(make(app), environ)
    assert status == 401
    assert app.calls == 0


def test_bad_seal_on_exempt_path_is_401() -> None:
    """A sealed request that fails verification is refused even on an exempt path."""
    app = Recorder()
    environ = sealed_environ()
    environ["PATH_INFO"] = "/health"
    status, _, _ = run(make(app), environ)
    assert status == 401
    assert app.calls == 0


def test_wrong_recipient_is_401() -> None:
    """A request sealed for another service gets 401 even though the keys are known."""
    app = Recorder()
    status, _, _ = run(make(app), sealed_environ())
    assert status == 200
    shipping = EncryptionMiddleware(
        app, "shipping", keyring=keyring(), replay_store=MemoryReplayStore()
    )
    status, _, _ = run(shipping, sealed_environ())
    assert status == 401
    assert app.calls == 1


def test_spoofed_sender_header_is_401() -> None:
    """Renaming the sender in X-Encryption-Service gets 401."""
    app = Recorder()
    environ = sealed_environ()
    environ["HTTP_X_ENCRYPTION_SERVICE"] = "shipping"
    status, _, _ = run(make(app), environ)
    assert status == 401
    assert app.calls == 0


def test_plaintext_passes_without_claimed_sender_when_not_required() -> None:
    """With require_encryption=False plaintext reaches the app, minus any claimed sender."""
    app = Recorder()
    environ = EnvironBuilder(
        path="/charge", method="POST", headers=[("X-Encryption-Service", "orders")]
    ).get_environ()
    status, _, body = run(make(app, require_encryption=False), environ)
    assert status == 200
    assert json.loads(body) == {"caller": None, "service": None}


def test_preset_caller_in_environ_is_not_trusted() -> None:
    """A mscomm.caller set by anything before the middleware is removed."""
    app = Recorder()
    environ = EnvironBuilder(path="/health").get_environ()
    environ["mscomm.caller"] = "orders"
    status, _, body = run(make(app), environ)
    assert (status, json.loads(body)["caller"]) == (200, None)


def test_refusal_bodies_are_identical_for_every_reason() -> None:
    """Every 401, whatever its reason, has byte-identical headers and body."""
    app = Recorder()
    mw = make(app)
    tampered = sealed_environ()
    tampered["wsgi.input"] = io.BytesIO(b"\0" * int(tampered["CONTENT_LENGTH"]))
    stale = sealed_environ()
    stale["HTTP_X_MSCOMM_SEAL"] = replace_seal_field(stale["HTTP_X_MSCOMM_SEAL"], "ts", "1")
    plain = EnvironBuilder(path="/charge").get_environ()
    answers = {repr(run(mw, e)) for e in (tampered, stale, plain)}
    assert len(answers) == 1
    assert app.calls == 0


class Trickle(io.BytesIO):
    """A request stream that returns at most 1000 bytes per read, like a slow socket."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(1000 if size is None or size < 0 else min(size, 1000))


def test_body_arriving_in_small_reads_is_read_whole() -> None:
    """A body that the server hands over in many short reads is read whole and verifies."""
    app = Recorder()
    environ = sealed_environ(body=b"z" * 200_000)
    environ["wsgi.input"] = Trickle(environ["wsgi.input"].read())
    status, _, _ = run(make(app, max_body_size=300_000), environ)
    assert status == 200
    assert app.calls == 1
