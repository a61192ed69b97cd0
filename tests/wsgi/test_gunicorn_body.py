"""The gunicorn body fast path: one copy from the socket, and gunicorn's reader left exact.

The first half drives gunicorn's own request parser over a real socket pair,
so the reader objects are exactly those a worker hands the middleware. The
second half runs a real gunicorn (sync and gthread workers) with sealed
requests on keep-alive connections, pipelined requests and truncated bodies.
"""

from __future__ import annotations

import io
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from support.gunicorn import GunicornServer
from support.sealing import KEYS, open_reply, prepare, send

from mscomm_sync.keyring import env_var_name
from mscomm_sync.wsgi.body import BodyRefused, read_request_body
from mscomm_sync.wsgi.gunicorn import read_gunicorn_body

SIZES = [1, 100, 8191, 8192, 65_537, 1024 * 1024 + 3, 5 * 1024 * 1024 + 5]


def raw_request(body: bytes, path: str = "/echo", *, length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n"
    return head.encode() + body


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    server.settimeout(30)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def feed(sock: socket.socket, data: bytes, *, then_close: bool = False) -> threading.Thread:
    """Send ``data`` from a thread in small pieces (the reader must not need it all at once)."""

    def run() -> None:
        view = memoryview(data)
        for start in range(0, len(data), 48 * 1024):
            sock.sendall(view[start : start + 48 * 1024])
        if then_close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def environ_of(req: Any) -> dict[str, Any]:
    return {"wsgi.input": req.body, "CONTENT_LENGTH": str(req.body.reader.length)}


@pytest.mark.parametrize("size", SIZES)
def test_body_comes_whole_and_gunicorn_reader_is_left_exact(
    pair: tuple[socket.socket, socket.socket], size: int
) -> None:
    """The body arrives in one bytearray; the pipelined request after it parses intact."""
    server, client = pair
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    follower = b"the next request's body"
    sender = feed(client, raw_request(body) + raw_request(follower, "/next"))
    parser = RequestParser(Config(), server, ("127.0.0.1", 1))
    first = next(parser)
    got = read_request_body(environ_of(first), limit=2 * size)
    assert isinstance(got, bytearray), "the fast path was not taken"
    assert got == body
    assert first.body.read() == b""
    second = next(parser)
    assert second.path == "/next"
    assert second.body.read() == follower
    sender.join(30)


def test_truncated_body_is_refused_and_the_connection_marked_unusable(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A client that stops inside the body gets a 400, never a padded body."""
    server, client = pair
    sender = feed(client, raw_request(b"x" * 70_000, length=100_000), then_close=True)
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    with pytest.raises(BodyRefused) as refused:
        read_request_body(environ_of(req), limit=1 << 20)
    assert refused.value.status == 400
    assert req.body.failed is True
    sender.join(30)


def test_memory_follows_the_bytes_that_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    """Headers declaring 16 MiB, followed by 300 kB, never make the server hold 16 MiB."""
    server, client = pair
    sender = feed(client, raw_request(b"m" * 300_000, length=16 << 20), then_close=True)
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    tracemalloc.start()
    try:
        with pytest.raises(BodyRefused):
            read_request_body(environ_of(req), limit=16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert req.body.failed is True  # set by the fast path only
    assert peak < 4 << 20  # a buffer of 2 MiB, not the 16 MiB declared
    sender.join(30)


def test_declines_a_body_already_partly_read(pair: tuple[socket.socket, socket.socket]) -> None:
    """Bytes an app (or another middleware) has read are not read again."""
    server, client = pair
    body = b"0123456789" * 2000
    sender = feed(client, raw_request(body))
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    assert req.body.read(10) == body[:10]
    assert read_gunicorn_body(req.body, len(body)) is None
    assert read_gunicorn_body(req.body, len(body) - 10) is None  # its buffer holds bytes
    assert req.body.read() == body[10:]
    sender.join(30)


def test_declines_chunked_bodies(pair: tuple[socket.socket, socket.socket]) -> None:
    """A chunked body has no length to read into: gunicorn decodes it as usual."""
    server, client = pair
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    sender = feed(client, head + b"5\r\nhello\r\n0\r\n\r\n")
    req = next(RequestParser(Config(), server, ("127.0.0.1", 1)))
    assert read_gunicorn_body(req.body, 5) is None
    environ = {"wsgi.input": req.body, "HTTP_TRANSFER_ENCODING": "chunked"}
    assert read_request_body(environ, limit=100) == b"hello"
    sender.join(30)


def test_declines_other_streams() -> None:
    """Any other server's stream is left alone, whatever it is called."""
    Body = type("Body", (io.BytesIO,), {})  # a look-alike of gunicorn's class name
    for stream in (io.BytesIO(b"abc"), Body(b"abc")):
        assert read_gunicorn_body(stream, 3) is None
        assert read_request_body({"wsgi.input": stream, "CONTENT_LENGTH": "3"}, limit=10) == b"abc"


# -- a real gunicorn -----------------------------------------------------


@pytest.fixture(scope="module", params=["sync", "gthread"])
def gunicorn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    tmp: Path = tmp_path_factory.mktemp("gunicorn-body")
    env = {env_var_name(name): key for name, key in KEYS.items()}
    env.update(SERVICE_NAME="billing", MSCOMM_REPLAY_DB=str(tmp / "replay.table"))
    with GunicornServer(
        "support.apps:echo_app()",
        workers=1,
        worker_class=request.param,
        threads=2,
        env=env,
    ) as server:
        yield server


def counts(server: GunicornServer) -> dict[str, int]:
    """How many bodies the app echoed, and how many the fast path read."""
    answer: dict[str, int] = requests.get(server.url + "/count", timeout=30).json()
    return answer


def test_sealed_bodies_of_every_size_on_one_connection(gunicorn: GunicornServer) -> None:
    """Each size verifies and echoes exactly, call after call on one keep-alive connection.

    Every body came through the fast path, not gunicorn's own reader.
    """
    before = counts(gunicorn)
    with requests.Session() as session:
        for size in SIZES + SIZES[::-1]:
            body = bytes([size % 251]) * size
            call = send(session, gunicorn.url + "/echo", body=body)
            assert call.response.status_code == 200
            assert open_reply(call).body == body
    after = counts(gunicorn)
    calls = 2 * len(SIZES)
    assert after["echoed"] - before["echoed"] == calls
    assert after["fast"] - before["fast"] == calls


def read_response(stream: Any) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a socket's file."""
    status = int(stream.readline().split()[1])
    length = 0
    for _ in range(100):
        line = stream.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, stream.read(length)


def test_pipelined_sealed_requests(gunicorn: GunicornServer) -> None:
    """Two sealed requests sent back to back: the second is parsed from what follows the first.

    The gthread worker answers both on the connection. The sync worker
    answers the first and, depending on gunicorn's release, the second or
    none, closing the connection.
    """
    url = gunicorn.url + "/echo"
    bodies = [b"a" * 200_000, b"b" * 300]
    wire = b""
    for body in bodies:
        prepared, _, _ = prepare(url, body=body)
        head = f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items()) + "\r\n"
        assert isinstance(prepared.body, bytes)
        wire += head.encode() + prepared.body
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=30) as sock:
        sock.sendall(wire)
        stream = sock.makefile("rb")
        answers = [read_response(stream)]
        if gunicorn.worker_class == "gthread" or stream.peek(1):
            answers.append(read_response(stream))
        rest = stream.read()
    assert [status for status, _ in answers] == [200, 200][: len(answers)]
    assert [len(body) for _, body in answers] == [len(b) + 16 for b in bodies[: len(answers)]]
    assert rest == b""


def test_truncated_sealed_body_never_reaches_the_app(gunicorn: GunicornServer) -> None:
    """A body cut short is refused with a 400 and the app never runs."""
    prepared, _, _ = prepare(gunicorn.url + "/echo", body=b"c" * 150_000)
    assert isinstance(prepared.body, bytes)
    before = counts(gunicorn)
    head = f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:{gunicorn.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=30) as sock:
        sock.sendall(head.encode() + prepared.body[:100_000])
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").readline()
    assert answer.split()[1:2] in ([b"400"], [])  # 400, or closed without a word
    after = counts(gunicorn)
    assert after["echoed"] == before["echoed"]
    assert after["fast"] == before["fast"]
