"""max_body_size holds for every request, plaintext ones (exempt or not required) included."""

from __future__ import annotations

import io
from typing import Any, Optional

import pytest
from support.sealing import keyring

from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

LIMIT = 1024


class Reader:
    """A WSGI app that records the body it reads and the length it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[Optional[str], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = environ.get("CONTENT_LENGTH")
        self.seen.append((length, environ["wsgi.input"].read(int(length or 0))))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


class Unreadable(io.RawIOBase):
    """A request stream that fails the test if anyone reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


class Counting(io.BytesIO):
    """A request stream that counts the bytes read from it."""

    consumed = 0

    def read(self, size: Optional[int] = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def middleware(app: Reader, **options: Any) -> EncryptionMiddleware:
    options.setdefault("exempt_paths", ("/health", "/upload"))
    return EncryptionMiddleware(
        app,
        "billing",
        keyring=keyring(),
        replay_store=MemoryReplayStore(),
        max_body_size=LIMIT,
        **options,
    )


def environ(path: str, stream: Any, **extra: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "wsgi.errors": io.StringIO(),
        **extra,
    }


def call(app: EncryptionMiddleware, env: dict[str, Any]) -> tuple[int, bytes]:
    got: dict[str, str] = {}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        got["status"] = status
        return None

    body = b"".join(app(env, start_response))
    return int(got["status"][:3]), body


def test_exempt_path_with_long_content_length_gets_413_unread() -> None:
    """A plaintext request to an exempt path declaring more than the limit is refused unread."""
    app = Reader()
    status, _ = call(middleware(app), environ("/upload", Unreadable(), CONTENT_LENGTH="1025"))
    assert (status, app.seen) == (413, [])


def test_plaintext_limit_applies_when_encryption_is_not_required() -> None:
    """With require_encryption=False, a plaintext body above the limit is refused too."""
    app = Reader()
    wrapped = middleware(app, require_encryption=False)
    status, _ = call(wrapped, environ("/charge", Unreadable(), CONTENT_LENGTH="5000"))
    assert (status, app.seen) == (413, [])


def test_plaintext_within_limit_passes_unbuffered() -> None:
    """A plaintext body at the limit reaches the app, which reads the stream itself."""
    app = Reader()
    stream = Counting(b"a" * LIMIT)
    status, body = call(middleware(app), environ("/upload", stream, CONTENT_LENGTH=str(LIMIT)))
    assert (status, body, app.seen) == (200, b"ok", [(str(LIMIT), b"a" * LIMIT)])


def test_malformed_plaintext_content_length_gets_400() -> None:
    """A plaintext request with a garbage Content-Length is refused with 400."""
    app = Reader()
    status, _ = call(middleware(app), environ("/upload", Unreadable(), CONTENT_LENGTH="12abc"))
    assert (status, app.seen) == (400, [])


def test_chunked_plaintext_is_cut_off_past_the_limit() -> None:
    """A chunked plaintext body is read only until it passes the limit, then refused."""
    app = Reader()
    stream = Counting(b"a" * (LIMIT * 64))
    env = environ("/upload", stream, HTTP_TRANSFER_ENCODING="chunked")
    status, _ = call(middleware(app), env)
    assert (status, app.seen) == (413, [])
    assert stream.consumed <= LIMIT + 1


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_chunked_plaintext_within_limit_reaches_app_with_its_length(size: int) -> None:
    """A chunked plaintext body within the limit reaches the app with a true CONTENT_LENGTH."""
    app = Reader()
    env = environ("/upload", io.BytesIO(b"b" * size), HTTP_TRANSFER_ENCODING="chunked")
    status, _ = call(middleware(app), env)
    assert (status, app.seen) == (200, [(str(size), b"b" * size)])
    assert "HTTP_TRANSFER_ENCODING" not in env
