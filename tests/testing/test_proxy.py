"""Tests for mscomm_sync.testing.proxy: a fault proxy between a real client and a real server.

The servers are real TCP servers on 127.0.0.1 (an echo server, one that sends a
fixed number of bytes, one that records what it received) and a real WSGI server
(waitress, which keeps connections alive). Timing is never asserted: a delay is
shown by what has not happened yet while it lasts (with delays far longer than
the test waits), and a trickle by how many bytes a read gets.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import random
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

from mscomm_sync.errors import ConfigurationError, MscommError
from mscomm_sync.testing import Fault, FaultProxy, ProxyError, ProxyStats

from .conftest import RunUserTests

WAIT = 10.0  # seconds: an upper bound for a slow machine, never a measurement
LONG = 30.0  # seconds: a delay no test waits out
GLANCE = 0.3  # seconds: how long a test watches for what must not happen yet
ROOT = Path(__file__).resolve().parents[2]

Handler = Callable[[socket.socket], None]


class TcpServer:
    """A TCP server on 127.0.0.1 running ``handle(conn)`` for each connection on a thread."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._accepting = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", int(self.sock.getsockname()[1]))

    def __enter__(self) -> TcpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.join_handlers()
        self.sock.close()

    def join_handlers(self) -> None:
        """Wait for every connection's handler to end."""
        with self._accepting:
            threads = list(self._threads)
        for thread in threads:
            thread.join(WAIT)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            thread.start()
            with self._accepting:
                self._threads.append(thread)
                self.accepted += 1
                self._accepting.notify_all()

    def wait_accepted(self, n: int) -> bool:
        """Wait until ``n`` connections have been accepted (at most :data:`WAIT`)."""
        with self._accepting:
            return self._accepting.wait_for(lambda: self.accepted >= n, WAIT)

    def _run(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        with conn, contextlib.suppress(OSError):
            self.handle(conn)


def echo(conn: socket.socket) -> None:
    """Send back everything received, until the client hangs up."""
    for _ in range(10_000):
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def sends(n: int) -> Handler:
    """A handler that sends ``n`` bytes at once, then waits for the client to hang up."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(b"d" * n)
        for _ in range(10_000):
            if not conn.recv(65536):
                return

    return handle


class Recorder:
    """A handler that keeps what it receives and how the connection ended."""

    def __init__(self) -> None:
        self.received = b""
        self.ending: Optional[str] = None
        self.done = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        try:
            self.received, self.ending = read_all(conn)
        finally:
            self.done.set()


def read_all(sock: socket.socket, timeout: float = WAIT) -> tuple[bytes, str]:
    """Read until the peer is done; return the bytes and ``eof``, ``reset`` or ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    for _ in range(100_000):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        except socket.timeout:
            return data, "timeout"
        if not chunk:
            return data, "eof"
        data += chunk
    raise AssertionError("the peer never finished")


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)


def exchange(proxy: FaultProxy, data: bytes) -> str:
    """Connect, send ``data``, hang up our side and read; return how the connection ended.

    A reset may surface at any step (even while connecting, when it comes right
    after the handshake), and only once: whichever step meets it says ``reset``.
    """
    try:
        with connect(proxy) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            return read_all(sock)[1]
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
            return "reset"  # ENOTCONN: our shutdown() came after the RST
        raise


@pytest.fixture
def echo_server() -> Iterator[TcpServer]:
    with TcpServer(echo) as server:
        yield server


# -- forwarding ----------------------------------------------------------------


def test_without_a_fault_bytes_pass_both_ways_untouched(echo_server: TcpServer) -> None:
    """Without a fault, 200 KB go to the server and come back intact, and are counted."""
    payload = os.urandom(200_000)
    with FaultProxy(echo_server.address) as proxy, connect(proxy) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data, ending = read_all(sock)
        stats = proxy.stats()
    assert (data == payload, ending) == (True, "eof")
    assert (stats.connections, stats.clean, stats.reset) == (1, 1, 0)
    assert stats.bytes_upstream == stats.bytes_downstream == len(payload)


def test_a_url_or_an_address_names_the_upstream() -> None:
    """The upstream is a URL or (host, port); anything without both is a ConfigurationError."""
    assert FaultProxy("http://127.0.0.1:8001").upstream == ("127.0.0.1", 8001)
    assert FaultProxy("127.0.0.1:8002").upstream == ("127.0.0.1", 8002)
    assert FaultProxy(("127.0.0.1", 8003)).upstream == ("127.0.0.1", 8003)
    for bad in ("http://127.0.0.1", "", "http://:80", ("127.0.0.1", 0), "http://h:99999"):
        with pytest.raises(ConfigurationError) as info:
            FaultProxy(bad)  # type: ignore[arg-type]
        assert info.value.variable == "upstream"


def test_a_proxy_does_nothing_until_started() -> None:
    """Building a proxy opens no socket and starts no thread; importing the package loads
    no proxy module."""
    threads = threading.active_count()
    proxy = FaultProxy(("127.0.0.1", 9), fault=Fault(blackhole=True))
    assert threading.active_count() == threads
    with pytest.raises(ProxyError):
        proxy.port  # noqa: B018
    assert "not started" in repr(proxy)
    code = "import sys, mscomm_sync.testing as t; print([m for m in sys.modules if 'g.proxy' in m])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


# -- latency ---------------------------------------------------------------------


def test_latency_holds_a_connection_back_before_the_server_sees_it() -> None:
    """With per-connection latency, the server is not connected to while it lasts; stop()
    ends the wait."""
    recorder = Recorder()
    with TcpServer(recorder) as server:
        proxy = FaultProxy(server.address, fault=Fault(latency=LONG)).start()
        with connect(proxy) as sock:
            sock.sendall(b"hello")
            assert not recorder.done.wait(GLANCE)
            assert server.accepted == 0
            assert proxy.stats().delayed == 1
            proxy.stop()
    assert server.accepted == 0


def test_a_short_latency_still_forwards_everything(echo_server: TcpServer) -> None:
    """Latency per connection and per chunk delays bytes but loses none."""
    fault = Fault(latency=0.05, chunk_latency=0.01)
    with FaultProxy(echo_server.address, fault=fault) as proxy, connect(proxy) as sock:
        sock.sendall(b"x" * 5000)
        sock.shutdown(socket.SHUT_WR)
        data, ending = read_all(sock)
        assert (len(data), ending) == (5000, "eof")
        assert proxy.stats().delayed == 1


def test_chunk_latency_holds_back_each_chunk(echo_server: TcpServer) -> None:
    """With a per-chunk latency, a chunk is not forwarded while it lasts."""
    fault = Fault(chunk_latency=LONG)
    with FaultProxy(echo_server.address, fault=fault) as proxy, connect(proxy) as sock:
        sock.sendall(b"ping")
        assert read_all(sock, timeout=GLANCE) == (b"", "timeout")
        assert proxy.stats().bytes_upstream == 0


# -- resets ------------------------------------------------------------------------


def test_reset_after_n_answer_bytes() -> None:
    """reset_after=1000 downstream: the client gets exactly 1,000 bytes, then an RST."""
    with TcpServer(sends(10_000)) as server:
        fault = Fault(reset_after=1000, reset_direction="downstream")
        with FaultProxy(server.address, fault=fault) as proxy, connect(proxy) as sock:
            data, ending = read_all(sock)
            stats = proxy.stats()
    assert (len(data), ending) == (1000, "reset")
    assert (stats.reset, stats.bytes_downstream) == (1, 1000)


def test_reset_after_n_request_bytes() -> None:
    """reset_after=1000 upstream: the server gets exactly 1,000 bytes and an RST; so does
    the client."""
    recorder = Recorder()
    with TcpServer(recorder) as server:
        fault = Fault(reset_after=1000, reset_direction="upstream")
        with FaultProxy(server.address, fault=fault) as proxy, connect(proxy) as sock:
            sock.sendall(b"r" * 5000)
            _, ending = read_all(sock)
            assert recorder.done.wait(WAIT)
            assert proxy.stats().reset == 1
    assert ending == "reset"
    assert (len(recorder.received), recorder.ending) == (1000, "reset")


def test_reset_before_any_request_byte_never_reaches_the_server(echo_server: TcpServer) -> None:
    """reset_after=0 upstream resets on accept: the server is never connected to."""
    fault = Fault(reset_after=0, reset_direction="upstream")
    with FaultProxy(echo_server.address, fault=fault) as proxy:
        assert exchange(proxy, b"hello") == "reset"
        assert proxy.stats().reset == 1
    assert echo_server.accepted == 0


def test_reset_before_any_answer_byte_comes_after_the_server_ran() -> None:
    """reset_after=0 downstream: the app runs, then the client's answer is an RST."""
    runs: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        runs.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with WaitressServer(app) as address, FaultProxy(address) as proxy:
        proxy.set(Fault(reset_after=0, reset_direction="downstream"))
        with pytest.raises(requests.ConnectionError):
            requests.post(proxy.url + "/charge", data=b"{}", timeout=WAIT)
        assert (runs, proxy.stats().reset) == (["/charge"], 1)


def test_a_reset_from_the_server_is_passed_on_but_not_counted() -> None:
    """A server's own RST reaches the client as an RST; the proxy injected nothing."""

    def resets(conn: socket.socket) -> None:
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with TcpServer(resets) as server, FaultProxy(server.address) as proxy:
        assert exchange(proxy, b"hi") == "reset"
        assert proxy.stats().reset == 0


def test_a_server_that_cannot_be_reached_resets_the_client() -> None:
    """Nothing listens upstream: the client gets an RST, counted as an upstream failure."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # bound, never listening: refuses
        with FaultProxy(placeholder.getsockname()) as proxy:
            assert exchange(proxy, b"hi") == "reset"
            assert proxy.wait_for(lambda s: s.upstream_failures == 1).upstream_failures == 1


# -- blackhole, trickle, refuse -------------------------------------------------------


def test_a_blackhole_accepts_and_never_answers(echo_server: TcpServer) -> None:
    """A blackholed connection is accepted and read, never forwarded nor answered."""
    with FaultProxy(echo_server.address, fault=Fault(blackhole=True)) as proxy:
        with connect(proxy) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert read_all(sock, timeout=GLANCE) == (b"", "timeout")
        stats = proxy.wait_for(lambda s: s.active == 0)
    assert (stats.blackholed, stats.bytes_upstream, stats.active) == (1, 0, 0)
    assert echo_server.accepted == 0


def test_a_trickle_forwards_one_piece_per_interval() -> None:
    """trickle=10 with a long interval: the first 10 bytes come at once, the next not yet."""
    with TcpServer(sends(50)) as server:
        fault = Fault(trickle=10, trickle_interval=LONG)
        with FaultProxy(server.address, fault=fault) as proxy, connect(proxy) as sock:
            assert read_all(sock, timeout=GLANCE) == (b"d" * 10, "timeout")
            stats = proxy.stats()
    assert (stats.trickled, stats.bytes_downstream) == (1, 10)


def test_a_fast_trickle_delivers_everything_in_order(echo_server: TcpServer) -> None:
    """A trickle upstream loses and reorders nothing."""
    payload = bytes(range(256)) * 4
    fault = Fault(trickle=100, trickle_interval=0.001, trickle_direction="upstream")
    with FaultProxy(echo_server.address, fault=fault) as proxy, connect(proxy) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == (payload, "eof")


def test_refuse_stops_listening_and_listening_resumes_on_the_same_port(
    echo_server: TcpServer,
) -> None:
    """refuse: connections are refused (ECONNREFUSED); Fault() opens the same port again."""
    with FaultProxy(echo_server.address) as proxy:
        port = proxy.port
        proxy.set(Fault(refuse=True))
        assert proxy.stats().refusing
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        proxy.set(Fault())
        assert (proxy.port, proxy.stats().refusing) == (port, False)
        with connect(proxy) as sock:
            sock.sendall(b"back")
            sock.shutdown(socket.SHUT_WR)
            assert read_all(sock) == (b"back", "eof")


def test_a_proxy_may_start_refusing(echo_server: TcpServer) -> None:
    """A proxy started with refuse holds its port without listening."""
    with FaultProxy(echo_server.address, fault=Fault(refuse=True)) as proxy:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)
        assert proxy.stats().connections == 0


# -- probability and changes while running ----------------------------------------------


def test_a_seeded_random_picks_the_same_connections_every_run(echo_server: TcpServer) -> None:
    """With probability 0.25 and Random(5), exactly the connections whose draw is below 0.25
    are reset, in order."""
    draws = random.Random(5)
    expected = [draws.random() < 0.25 for _ in range(40)]
    fault = Fault(reset_after=0, reset_direction="upstream", probability=0.25)
    seen = []
    with FaultProxy(echo_server.address, fault=fault, random=random.Random(5)) as proxy:
        for _ in range(40):
            seen.append(exchange(proxy, b"?") == "reset")
        stats = proxy.stats()
    assert seen == expected
    assert 0 < sum(expected) < 40
    assert (stats.reset, stats.clean) == (sum(expected), 40 - sum(expected))


def test_set_applies_to_the_next_call_on_a_keep_alive_session() -> None:
    """After set(), a session's pooled connection does not escape the new fault: it was closed,
    and the next call opens one that gets it."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with WaitressServer(app) as address, FaultProxy(address) as proxy:
        with requests.Session() as session:
            assert session.get(proxy.url + "/", timeout=WAIT).content == b"ok"
            assert session.get(proxy.url + "/", timeout=WAIT).content == b"ok"
            assert proxy.stats().connections == 1  # kept alive
            proxy.set(Fault(reset_after=0, reset_direction="downstream"))
            assert proxy.stats().dropped == 1
            with pytest.raises(requests.ConnectionError):
                session.get(proxy.url + "/", timeout=WAIT)
            proxy.set(Fault())
            assert session.get(proxy.url + "/", timeout=WAIT).content == b"ok"
        stats = proxy.stats()
    assert (stats.connections, stats.reset) == (3, 1)


def test_keep_open_leaves_open_connections_with_their_fault(echo_server: TcpServer) -> None:
    """set(keep_open=True): an open connection keeps forwarding; a new one gets the fault."""
    with FaultProxy(echo_server.address) as proxy, connect(proxy) as old:
        old.sendall(b"1")
        assert old.recv(10) == b"1"
        proxy.set(Fault(blackhole=True), keep_open=True)
        old.sendall(b"2")
        assert old.recv(10) == b"2"
        with connect(proxy) as new:
            new.sendall(b"3")
            assert read_all(new, timeout=GLANCE) == (b"", "timeout")
        assert proxy.stats().dropped == 0


# -- shutdown -------------------------------------------------------------------------------


def open_descriptors() -> set[int]:
    """The descriptors open now, after collecting garbage: a socket another test left to the
    collector must not close (or stay open) in the middle of a count."""
    gc.collect()
    return {int(name) for name in os.listdir("/proc/self/fd")}


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mscomm-fault-proxy")]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_stop_closes_every_socket_and_joins_every_thread(echo_server: TcpServer) -> None:
    """stop() with a blackholed, a trickling and an idle connection open: every proxy socket
    is closed, every thread ended, and each client sees its connection end."""
    threads, descriptors = threading.active_count(), open_descriptors()
    proxy = FaultProxy(echo_server.address).start()
    clients = []
    faults = (Fault(blackhole=True), Fault(trickle=1, trickle_interval=LONG), Fault())
    for n, fault in enumerate(faults, 1):
        proxy.set(fault, keep_open=True)
        sock = connect(proxy)
        sock.sendall(b"abc")
        clients.append(sock)
        proxy.wait_for(lambda s, n=n: s.connections == n)  # accepted with this fault
    # Everything forwarded that will be: the trickle's and the idle connection's bytes.
    assert proxy.wait_for(lambda s: s.bytes_upstream == 6).connections == 3
    assert echo_server.wait_accepted(2)
    assert proxy_threads()
    proxy.stop()
    assert proxy_threads() == []
    endings = [read_all(sock)[1] for sock in clients]
    for sock in clients:
        sock.close()
    echo_server.join_handlers()  # its side of the two forwarded connections
    assert endings == ["eof", "eof", "eof"]
    assert threading.active_count() == threads
    assert open_descriptors() - descriptors == set()  # nothing the proxy opened is left open
    assert proxy.stats().dropped == 3


def test_stop_twice_is_harmless_and_a_proxy_starts_once(echo_server: TcpServer) -> None:
    """stop() again does nothing; start() after stop() raises ProxyError."""
    proxy = FaultProxy(echo_server.address).start()
    proxy.stop()
    proxy.stop()
    with pytest.raises(ProxyError) as info:
        proxy.start()
    assert info.value.reason == "started"
    assert isinstance(info.value, MscommError)


# -- the fault itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "variable"),
    [
        ({"latency": -1}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"chunk_latency": True}, "chunk_latency"),
        ({"reset_after": -1}, "reset_after"),
        ({"reset_after": 1.5}, "reset_after"),
        ({"reset_direction": "sideways"}, "reset_direction"),
        ({"trickle": 0}, "trickle"),
        ({"trickle_interval": float("inf")}, "trickle_interval"),
        ({"probability": 1.5}, "probability"),
        ({"refuse": True, "latency": 1}, "refuse"),
        ({"refuse": True, "blackhole": True}, "refuse"),
        ({"refuse": True, "probability": 0.5}, "probability"),
        ({"blackhole": True, "reset_after": 0}, "blackhole"),
        ({"blackhole": True, "trickle": 1}, "blackhole"),
    ],
)
def test_a_bad_fault_is_a_configuration_error(options: dict[str, Any], variable: str) -> None:
    """Every out-of-range value and every contradiction names the field."""
    with pytest.raises(ConfigurationError) as info:
        Fault(**options)
    assert info.value.variable == variable


def test_a_fault_says_its_kinds_and_is_frozen() -> None:
    """kinds lists what a fault does; a fault cannot be changed in place."""
    assert Fault().kinds == frozenset()
    both = Fault(latency=0.1, reset_after=10, probability=0.2)
    assert both.kinds == {"latency", "reset"}
    assert Fault(chunk_latency=0.1).kinds == {"latency"}
    with pytest.raises(AttributeError):
        both.latency = 0  # type: ignore[misc]
    with pytest.raises(ConfigurationError):
        FaultProxy(("127.0.0.1", 9), fault="reset")  # type: ignore[arg-type]


def test_stats_are_one_snapshot() -> None:
    """stats() is a frozen ProxyStats, all zero before anything happened."""
    stats = FaultProxy(("127.0.0.1", 9)).stats()
    assert stats == ProxyStats()
    assert "fault=none" in repr(FaultProxy(("127.0.0.1", 9)))


# -- the documented example ---------------------------------------------------------------


def test_the_example_in_docs_reliability_passes(run_user_tests: RunUserTests) -> None:
    """The user's test shown in docs/reliability.md passes as written, with the plugin."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    [example] = [b for b in blocks if "def test_charge_is_not_sent_twice" in b]
    result = run_user_tests(example)
    result.assert_outcomes(passed=1)


# -- a WSGI server that keeps connections alive ------------------------------------------


class WaitressServer:
    """Serve ``app`` with waitress on 127.0.0.1; the ``with`` gives its ``(host, port)``."""

    def __init__(self, app: Any) -> None:
        from waitress import wasyncore
        from waitress.server import create_server

        self._map: dict[int, Any] = {}
        self._server = create_server(app, host="127.0.0.1", port=0, threads=4, map=self._map)
        self._close_all = wasyncore.close_all
        self._thread = threading.Thread(
            target=wasyncore.loop,
            kwargs={"timeout": 0.05, "map": self._map, "use_poll": True},
            daemon=True,
        )

    def __enter__(self) -> tuple[str, int]:
        self._thread.start()
        return ("127.0.0.1", int(self._server.effective_port))

    def __exit__(self, *exc: object) -> None:
        self._server.task_dispatcher.shutdown(timeout=5)
        self._close_all(self._map)
        self._thread.join(WAIT)
