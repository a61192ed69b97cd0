"""The deadline bounds reading the answer's body, not only each socket read."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable

import attrs
import pytest
import requests

from mscomm_sync.errors import DeadlineExceededError, ServiceUnavailableError
from mscomm_sync.policies import CallPolicy, TimeoutPolicy
from mscomm_sync.registry import FileRegistry

from .servers import SocketServer


class TrickleServer(SocketServer):
    """A server on 127.0.0.1 that sends its headers at once, then its body byte by byte.

    Each byte follows the last after ``interval`` seconds, so every socket read
    is quick but the body takes ``length * interval`` seconds in all.
    """

    def __init__(self, length: int = 20, interval: float = 0.2) -> None:
        super().__init__()
        self.length = length
        self.interval = interval

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
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
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % self.length
        )
        for _ in range(self.length):
            if self._stop.wait(self.interval):
                return
            try:
                conn.sendall(b"x")
            except OSError:
                return  # the client gave up


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_trickled_body_stops_at_deadline(
    registry: FileRegistry, make_client: Callable[..., Any], method: str
) -> None:
    """A body trickled one byte per 0.2 s raises DeadlineExceededError, not the whole answer."""
    plaintext = attrs.evolve(CallPolicy(), allow_plaintext_replies=True)
    with TrickleServer(length=20, interval=0.2) as server:
        registry.register("billing", server.url)
        client = make_client(
            clock=time.monotonic, sleep=time.sleep, policies={"billing": plaintext}
        )
        with pytest.raises(DeadlineExceededError) as info:
            client.request(target_service="billing", endpoint="/x", method=method, timeout=0.5)
        assert (info.value.service, info.value.timeout) == ("billing", 0.5)
        assert server.requests == 1


def test_attempt_timeout_while_reading_body(
    registry: FileRegistry, make_client: Callable[..., Any]
) -> None:
    """A body pause longer than the attempt's read timeout fails the attempt, not the call."""
    policy = attrs.evolve(
        CallPolicy(),
        allow_plaintext_replies=True,
        timeout=TimeoutPolicy(deadline=30, attempt=0.3),
    )
    with TrickleServer(length=5, interval=2.0) as server:
        registry.register("billing", server.url)
        client = make_client(clock=time.monotonic, sleep=time.sleep, policies={"billing": policy})
        with pytest.raises(ServiceUnavailableError) as info:
            client.request(target_service="billing", endpoint="/x", method="POST")
        assert not isinstance(info.value, DeadlineExceededError)
        assert isinstance(info.value.last_error, requests.ConnectionError)
        assert (info.value.attempts, server.requests) == (1, 1)
