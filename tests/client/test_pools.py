"""Tests for mscomm_sync.client.pools: the status line and headers are read within the deadline.

A real socket server on 127.0.0.1 writes exact bytes; the answers are read
through urllib3 with the pools the transport mounts.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import urllib3

from mscomm_sync.client import pools
from mscomm_sync.client.deadline import Deadline
from mscomm_sync.client.pools import deadline_pools, reading
from mscomm_sync.errors import MscommError
from mscomm_sync.testing import LiveServer

from .servers import Recorder, dead_url, echo, json_app, sealed

Script = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Script], str]]:
    """Serve one connection with a script that writes the answer; yield the URL maker."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(script: Script) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # the request: small, in one read on loopback
                script(conn)
                time.sleep(0.2)  # let the client read before the close

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}/"

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


def _get(url: str, seconds: float) -> urllib3.BaseHTTPResponse:
    manager = deadline_pools(urllib3.PoolManager(retries=False, timeout=5.0))
    deadline = Deadline(service="billing", at=time.monotonic() + seconds, seconds=seconds)
    reading.deadline = deadline
    try:
        return manager.request("GET", url, preload_content=True)
    finally:
        reading.deadline = None


def _count_line_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = pools._LineReader.readline

    def counted(self: pools._LineReader, limit: int = -1) -> bytes:
        calls[0] += 1
        return original(self, limit)

    monkeypatch.setattr(pools._LineReader, "readline", counted)
    return calls


def test_a_head_that_came_whole_is_parsed_without_line_by_line_reads(
    serve: Callable[[Script], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual answer (its whole head in the first read) skips the line reader, same result."""
    calls = _count_line_reads(monkeypatch)
    url = serve(lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"))
    response = _get(url, 5.0)
    assert (response.status, response.headers["X-A"], response.data) == (200, "1", b"ok")
    assert calls[0] == 0


def test_a_head_in_pieces_is_read_line_by_line(
    serve: Callable[[Script], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head split over several writes goes through the line reader and parses the same."""
    calls = _count_line_reads(monkeypatch)

    def script(conn: socket.socket) -> None:
        for piece in (b"HTTP/1.1 200 OK\r\nContent-", b"Length: 2\r\n", b"X-A: 1\r\n\r\nok"):
            conn.sendall(piece)
            time.sleep(0.05)

    response = _get(serve(script), 5.0)
    assert (response.status, response.headers["X-A"], response.data) == (200, "1", b"ok")
    assert calls[0] > 0


def test_an_interim_answer_before_the_final_one_is_read_line_by_line(
    serve: Callable[[Script], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100 Continue whose head came whole still takes the bounded path: the final head may not."""
    calls = _count_line_reads(monkeypatch)

    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.05)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    response = _get(serve(script), 5.0)
    assert (response.status, response.data) == (200, b"ok")
    assert calls[0] > 0


def test_a_trickled_head_is_cut_off_at_the_deadline(serve: Callable[[Script], str]) -> None:
    """Bytes that each come inside the read timeout cannot stretch the head past the deadline."""
    stop = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # at most 5 s; the deadline is 0.5 s
            if stop.is_set():
                return
            try:
                conn.sendall(b"X")
            except OSError:
                return
            time.sleep(0.05)

    url = serve(script)
    try:
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            _get(url, 0.5)
    finally:
        stop.set()


_INTERRUPTED_ANSWER = """
from mscomm_sync.client import pools

class Interrupted:
    def makefile(self, mode):
        raise KeyboardInterrupt

try:
    pools._Response(Interrupted())
except KeyboardInterrupt:
    pass
else:
    raise SystemExit("the constructor did not reach makefile()")
"""


def test_an_answer_interrupted_before_it_has_a_file_is_finalised_quietly() -> None:
    """Ctrl-C inside the answer's constructor leaves nothing for the finaliser to trip over.

    Run with ``-X dev``: before Python 3.13 an error in an I/O object's
    finaliser is reported only in development mode (3.13 always reports it).
    """
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _INTERRUPTED_ANSWER],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def test_an_attempt_leaves_no_reading_deadline_on_its_thread(
    make_client: Callable[..., Any], registry: Any
) -> None:
    """After a call, answered or failed, plain reads on the thread are not bounded by it."""
    with LiveServer(sealed(json_app(Recorder(), {"/echo": echo}))) as server:
        registry.register("billing", server.url)
        client = make_client()
        assert client.request(target_service="billing", endpoint="/echo").status_code == 200
        assert reading.deadline is None
        registry.register("gone", dead_url())
        with pytest.raises(MscommError):
            client.request(target_service="gone", endpoint="/echo")
        assert reading.deadline is None
