"""Large sealed answers are read into one buffer, with the same deadline and errors as pieces.

A sealed answer of 64 KiB or more with a Content-Length is read by
``read_answer(sealed=True)`` straight into a bytearray; smaller
ones, and every unsealed answer, in pieces. Both ways must give the caller
the same bytes, return the connection to the pool, and fail the same way.
"""

from __future__ import annotations

import io
import os
import ssl
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
import requests

from mscomm_sync.client.answer import read_answer
from mscomm_sync.client.deadline import Deadline
from mscomm_sync.client.failures import AttemptFailed
from mscomm_sync.errors import DeadlineExceededError, IntegrityError, ServiceUnavailableError
from mscomm_sync.registry import FileRegistry

from .servers import WaitressServer, sealed, sealed_trickle

INTO_BUFFER = 64 * 1024
PIECES = INTO_BUFFER - 1
LIMIT = 64 * 1024 * 1024


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


@pytest.mark.parametrize("length", [PIECES, INTO_BUFFER, 300_000, 5 * 1024 * 1024 + 5])
def test_only_large_sealed_answers_come_as_a_buffer(length: int) -> None:
    """read_answer's one-copy path is taken exactly when asked and the answer is large."""
    with sealed_trickle(length, burst=length) as server:
        for sealed in (True, False):
            resp = requests.get(server.url + "/x", stream=True, timeout=10)
            deadline = Deadline(service="billing", at=time.monotonic() + 10, seconds=10)
            data = read_answer(resp, deadline=deadline, limit=LIMIT, sealed=sealed)
            assert data == b"s" * length
            direct = sealed and length >= INTO_BUFFER
            assert isinstance(data, bytearray if direct else bytes)


def test_tls_failure_inside_the_answer_keeps_its_type() -> None:
    """A TLS error while reading into the buffer fails the attempt, naming the TLS error."""

    class BrokenTLS(io.BufferedIOBase):
        """The TLS layer under http.client failing on the next read."""

        def readinto1(self, buffer: Any) -> int:
            raise ssl.SSLError("decryption failed or bad record mac")

    with sealed_trickle(200_000, burst=60_000, hang_up=True) as server:
        resp = requests.get(server.url + "/x", stream=True, timeout=10)
        answer: Any = resp.raw._fp  # the http.client response urllib3 wraps
        real, answer.fp = answer.fp, BrokenTLS()
        deadline = Deadline(service="billing", at=time.monotonic() + 10, seconds=10)
        try:
            with pytest.raises(AttemptFailed) as info:
                read_answer(resp, deadline=deadline, limit=LIMIT, sealed=True)
            assert isinstance(info.value.cause, ssl.SSLError)
            assert (info.value.reason, info.value.connect_phase) == ("SSLError", False)
        finally:
            real.close()


def test_memory_follows_the_bytes_that_arrived() -> None:
    """An answer declaring 16 MiB that stops after 300 kB never makes the client hold 16 MiB."""
    with sealed_trickle(16 << 20, burst=300_000, hang_up=True) as server:
        resp = requests.get(server.url + "/x", stream=True, timeout=10)
        deadline = Deadline(service="billing", at=time.monotonic() + 10, seconds=10)
        tracemalloc.start()
        try:
            with pytest.raises(AttemptFailed) as info:
                read_answer(resp, deadline=deadline, limit=LIMIT, sealed=True)
            assert info.value.reason == "IncompleteRead"
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
    with sealed_trickle(length, burst=60_000, close=close) as server:
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
def test_hang_up_inside_the_answer(
    registry: FileRegistry, make_client: Callable[..., Any], length: int
) -> None:
    """A connection closed inside the body fails the attempt, either way the body is read."""
    with sealed_trickle(length, burst=30_000, hang_up=True) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        # A hang-up with the request still unread by the server may reach us as a reset.
        assert info.value.reason in {"IncompleteRead", "ConnectionResetError"}
        assert (info.value.attempts, server.requests) == (1, 1)
        # A read that failed into a buffer keeps the buffer for the next answer.
        kept = len(client.get_adapter("mscomm://billing/").transport.buffers)
        assert kept == (1 if length >= INTO_BUFFER else 0)


def flip_large_answers(inner: Callable[..., Any]) -> Callable[..., Any]:
    """Serve ``inner``, but flip one byte of every answer body on ``/tamper``."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = b"".join(inner(environ, start_response))
        if environ["PATH_INFO"] == "/tamper" and body:
            body = body[:-40] + bytes([body[-40] ^ 1]) + body[-39:]
        return [body]

    return app


def test_kept_buffer_serves_answers_in_turn_without_mixing(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Answers read into the kept buffer, larger and smaller in turn, each come back exact.

    The buffer holds the previous answer's ciphertext when the next one is
    read into it; a body that read or opened past its own length would show
    here as wrong bytes or a failed tag.
    """
    ports: list[str] = []
    with WaitressServer(sealed(echo_with_port(ports))) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        adapter = client.get_adapter("mscomm://billing/").transport
        sizes = (1024 * 1024 + 3, INTO_BUFFER, 70_000, 2 * 1024 * 1024, 900_000, INTO_BUFFER + 7)
        for size in sizes:
            body = os.urandom(size)
            resp = client.request(
                target_service="billing", endpoint="/echo", method="POST", payload=body
            )
            assert type(resp.content) is bytes and resp.content == body
            assert resp.headers["Content-Length"] == str(size)
            assert 1 <= len(adapter.buffers) <= 2  # only what did not fit adds a buffer
    assert len(set(ports)) == 1


def test_one_buffer_is_read_into_again_and_again(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """After the first large answer, later ones that fit land in the same buffer."""
    with WaitressServer(sealed(echo_with_port([]))) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        adapter = client.get_adapter("mscomm://billing/").transport
        client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=bytes(500_000)
        )
        (first,) = adapter.buffers._free
        for size in (400_000, INTO_BUFFER, 500_000):
            body = os.urandom(size)
            resp = client.request(
                target_service="billing", endpoint="/echo", method="POST", payload=body
            )
            assert resp.content == body
            (again,) = adapter.buffers._free
            assert again is first
        # Larger than anything kept: read into a new buffer, which is then kept.
        client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=bytes(600_000)
        )
        (bigger,) = [b for b in adapter.buffers._free if len(b) >= 600_016]
        assert bigger is not first
        # Past the largest kept size: not kept.
        client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=bytes(3 << 20)
        )
        assert all(len(b) <= adapter.buffers.largest for b in adapter.buffers._free)
        client.close()
        assert len(adapter.buffers) == 0


def test_sent_body_is_let_go_only_when_large(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """resp.request.body: the sealed bytes for a small call, None once a large one is sent."""
    with WaitressServer(sealed(echo_with_port([]))) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        small = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=b"a" * 1000
        )
        assert isinstance(small.request.body, bytes)
        assert len(small.request.body) == 1016 and b"a" * 32 not in small.request.body
        # The line is drawn on the sealed body: 16 bytes longer than the payload.
        below = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=b"c" * 65_519
        )
        assert isinstance(below.request.body, bytes) and len(below.request.body) == 65_535
        at = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=b"d" * 65_520
        )
        assert at.request.body is None and at.content == b"d" * 65_520
        large = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=b"b" * INTO_BUFFER
        )
        assert large.request.body is None
        assert large.content == b"b" * INTO_BUFFER
        assert large.request.headers["Content-Length"] == str(INTO_BUFFER + 16)


def test_tampered_large_answer_is_refused_and_the_buffer_kept(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A large answer that fails its tag raises IntegrityError; the next call still works."""
    with WaitressServer(flip_large_answers(sealed(echo_with_port([])))) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)
        adapter = client.get_adapter("mscomm://billing/").transport
        with pytest.raises(IntegrityError):
            client.request(
                target_service="billing", endpoint="/tamper", method="POST", payload=bytes(200_000)
            )
        assert len(adapter.buffers) == 1
        body = os.urandom(150_000)
        resp = client.request(
            target_service="billing", endpoint="/echo", method="POST", payload=body
        )
        assert resp.content == body


def test_threads_sharing_a_client_each_get_their_own_answer(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """Eight threads making large calls through one client: every answer is its own."""
    with WaitressServer(sealed(echo_with_port([])), threads=8) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep)

        def calls(seed: int) -> int:
            for turn in range(6):
                size = INTO_BUFFER + 10_000 * ((seed * 5 + turn) % 20)
                body = os.urandom(size)
                resp = client.request(
                    target_service="billing", endpoint="/echo", method="POST", payload=body
                )
                assert resp.content == body
            return seed

        with ThreadPoolExecutor(8) as executor:
            assert sorted(executor.map(calls, range(8), timeout=120)) == list(range(8))
        adapter = client.get_adapter("mscomm://billing/").transport
        assert 1 <= len(adapter.buffers) <= adapter.buffers.keep
