"""Large sealed answers are read into one buffer, with the same deadline and errors as pieces.

A sealed answer of 64 KiB or more with a Content-Length is read by
``deadline.read_body(into_buffer=True)`` straight into a bytearray; smaller
ones, and every unsealed answer, in pieces. Both ways must give the caller
the same bytes, return the connection to the pool, and fail the same way.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from typing import Any, Callable

import attrs
import pytest
import requests

from mscomm_sync.deadline import Deadline, read_body
from mscomm_sync.errors import DeadlineExceededError, ServiceUnavailableError
from mscomm_sync.policies import CallPolicy, TimeoutPolicy
from mscomm_sync.registry import FileRegistry

from .servers import SocketServer, WaitressServer, sealed

INTO_BUFFER = 64 * 1024
PIECES = INTO_BUFFER - 1


class SealedTrickleServer(SocketServer):
    """Answers as a sealed reply of ``length`` bytes: ``burst`` bytes at once, then a trickle.

    After the burst it sends one byte per ``interval`` seconds (at most 50,
    then it hangs up), or, with ``hang_up``, closes the connection at once. It answers one
    request per connection; ``close`` says so in a ``Connection: close``.
    """

    def __init__(
        self,
        length: int,
        *,
        burst: int,
        interval: float = 0.2,
        hang_up: bool = False,
        close: bool = False,
    ) -> None:
        super().__init__()
        self.length = length
        self.burst = burst
        self.interval = interval
        self.hang_up = hang_up
        self.close = close
        self.trickled = 0
        self.done = threading.Event()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            self.done.set()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            for _ in range(64):
                if b"\r\n\r\n" in head:
                    break
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            self._count()
            head = b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\n"
            if self.close:
                head += b"Connection: close\r\n"
            head += b"Content-Length: %d\r\n\r\n" % self.length
            conn.sendall(head + b"s" * self.burst)
            if self.hang_up:
                return
            # At most 50 more bytes, then hang up: a client that ignores its
            # deadline fails in seconds rather than hanging the suite.
            for _ in range(min(self.length - self.burst, 50)):
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(b"s")
                except OSError:
                    return  # the client gave up
                self.trickled += 1


def echo_with_port(ports: list[str]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ports.append(environ.get("REMOTE_PORT", "?"))
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]

    return app


def test_answers_of_every_size_open_on_one_connection(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Both ways of reading give back the exact bytes, and the keep-alive connection is reused."""
    ports: list[str] = []
    with WaitressServer(sealed(echo_with_port(ports))) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        for size in (PIECES, INTO_BUFFER, 1024 * 1024 + 3, 10, INTO_BUFFER + 1):
            body = bytes([size % 251]) * size
            resp = client.request(
                target_service="billing", endpoint="/echo", method="POST", payload=body
            )
            assert resp.status_code == 200
            assert type(resp.content) is bytes and resp.content == body
            assert resp.headers["Content-Length"] == str(size)
    assert len(ports) == 5 and len(set(ports)) == 1, ports


@pytest.mark.parametrize("length", [PIECES, INTO_BUFFER, 300_000])
def test_only_large_sealed_answers_come_as_a_buffer(length: int) -> None:
    """read_body's one-copy path is taken exactly when asked and the answer is large."""
    with SealedTrickleServer(length, burst=length) as server:
        for into_buffer in (True, False):
            resp = requests.get(server.url + "/x", stream=True, timeout=10)
            deadline = Deadline(service="billing", at=time.monotonic() + 10, seconds=10)
            data = read_body(resp, deadline=deadline, into_buffer=into_buffer)
            assert data == b"s" * length
            direct = into_buffer and length >= INTO_BUFFER
            assert isinstance(data, bytearray if direct else bytes)


def test_memory_follows_the_bytes_that_arrived() -> None:
    """An answer declaring 16 MiB that stops after 300 kB never makes the client hold 16 MiB."""
    with SealedTrickleServer(16 << 20, burst=300_000, hang_up=True) as server:
        resp = requests.get(server.url + "/x", stream=True, timeout=10)
        deadline = Deadline(service="billing", at=time.monotonic() + 10, seconds=10)
        tracemalloc.start()
        try:
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                read_body(resp, deadline=deadline, into_buffer=True)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 << 20  # a buffer of 2 MiB, not the 16 MiB declared


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
@pytest.mark.parametrize("length", [PIECES, 200_000], ids=["pieces", "buffer"])
def test_trickled_answer_stops_at_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], length: int, close: bool
) -> None:
    """A large answer trickled after its first 60 KiB still stops at the deadline.

    With ``Connection: close`` http.client lets go of the connection's socket
    before the body is read; the deadline must still reach the socket.
    """
    with SealedTrickleServer(length, burst=60_000, close=close) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        with pytest.raises(DeadlineExceededError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST", timeout=0.6)
        assert (info.value.service, info.value.timeout) == ("billing", 0.6)
        assert server.requests == 1
        # The client hung up mid-trickle; one that read past its deadline
        # would have taken all 50 bytes and seen the server hang up.
        assert server.done.wait(15)
        assert server.trickled < 50


@pytest.mark.parametrize("length", [PIECES, 200_000], ids=["pieces", "buffer"])
def test_pause_longer_than_attempt_timeout(
    registry: FileRegistry, make_client: Callable[..., Any], length: int
) -> None:
    """A pause longer than the attempt's read timeout fails the attempt, not the call."""
    policy = attrs.evolve(CallPolicy(), timeout=TimeoutPolicy(deadline=30, attempt=0.3))
    with SealedTrickleServer(length, burst=60_000, interval=2.0) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep, policies={"billing": policy})
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        assert not isinstance(info.value, DeadlineExceededError)
        assert isinstance(info.value.last_error, requests.ConnectionError)
        assert (info.value.attempts, server.requests) == (1, 1)


@pytest.mark.parametrize("length", [PIECES, 200_000], ids=["pieces", "buffer"])
def test_hang_up_inside_the_answer(
    registry: FileRegistry, make_client: Callable[..., Any], length: int
) -> None:
    """A connection closed inside the body fails as requests reports a broken body."""
    with SealedTrickleServer(length, burst=30_000, hang_up=True) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        assert isinstance(info.value.last_error, requests.exceptions.ChunkedEncodingError)
        assert (info.value.attempts, server.requests) == (1, 1)
