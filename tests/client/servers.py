"""Real services on 127.0.0.1 for the client tests, and a fake clock.

Every service is a small WSGI app behind the real EncryptionMiddleware,
served by the real threaded werkzeug server (LiveServer). The raw socket
server misbehaves on purpose (resets), which no WSGI server can be made to do.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Callable, Optional, TypeVar

from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

KEYS = {name: generate_key() for name in ("billing", "orders", "legacy")}

_S = TypeVar("_S", bound="SocketServer")

Handler = Callable[[dict[str, Any]], tuple[int, list[tuple[str, str]], bytes]]


def keyring() -> Keyring:
    """Return a keyring that holds every test service's key."""
    return Keyring.from_mapping(KEYS)


class FakeClock:
    """A monotonic clock and sleep that only move when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record the pause and advance the clock by it."""
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        with self._lock:
            self.now += seconds


class Recorder:
    """A thread-safe count of requests per path, with the headers last seen."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.request_ids: list[Optional[str]] = []
        self.callers: list[Optional[str]] = []
        self._lock = threading.Lock()

    def record(self, environ: dict[str, Any]) -> None:
        with self._lock:
            self.hits[environ.get("PATH_INFO", "")] += 1
            self.request_ids.append(environ.get("HTTP_X_REQUEST_ID"))
            self.callers.append(environ.get("mscomm.caller"))


def json_app(recorder: Recorder, routes: dict[str, Handler]) -> Callable[..., Iterable[bytes]]:
    """Return a WSGI app that records each request and dispatches on the path."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        recorder.record(environ)
        handler = routes.get(environ.get("PATH_INFO", ""))
        if handler is None:
            status, headers, body = 404, [("Content-Type", "application/json")], b'{"error":1}'
        else:
            status, headers, body = handler(environ)
        start_response(f"{status} X", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


def echo(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Answer with the method, body, content type and caller, as JSON."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else b""
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "body": data.decode("utf-8", "replace"),
            "content_type": environ.get("CONTENT_TYPE"),
            "caller": environ.get("mscomm.caller"),
            "query": environ.get("QUERY_STRING"),
        }
    ).encode()
    return 200, [("Content-Type", "application/json")], body


def sealed(
    app: Callable[..., Iterable[bytes]], service: str = "billing", **options: Any
) -> EncryptionMiddleware:
    """Wrap ``app`` in the real middleware with the test keys and an in-memory replay store."""
    options.setdefault("replay_store", MemoryReplayStore())
    return EncryptionMiddleware(app, service, keyring=keyring(), **options)


class SocketServer:
    """A listening socket on 127.0.0.1 that hands each connection to ``_handle`` on a thread.

    Subclasses write ``_handle``; they may wait on ``self._stop``, which is set
    when the ``with`` block ends, and count requests with ``_count()``.
    """

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self: _S) -> _S:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError


class TrickleServer(SocketServer):
    """Answers each connection's one request with ``length`` body bytes, slowly.

    It sends the status line, ``headers`` and ``burst`` bytes of body at
    once, then one byte per ``interval`` seconds, at most ``most`` of them,
    and hangs up. ``trickled`` counts the bytes sent one by one; ``done`` is
    set when the connection is finished with.
    """

    def __init__(
        self,
        length: int = 20,
        interval: float = 0.2,
        *,
        headers: bytes = b"Content-Type: text/plain\r\n",
        burst: int = 0,
        most: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.length = length
        self.interval = interval
        self.headers = headers
        self.burst = burst
        self.most = length - burst if most is None else min(most, length - burst)
        self.trickled = 0
        self.done = threading.Event()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._answer(conn)
        finally:
            self.done.set()

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
        status = b"HTTP/1.1 200 OK\r\n" + self.headers
        conn.sendall(status + b"Content-Length: %d\r\n\r\n" % self.length + b"s" * self.burst)
        for _ in range(self.most):
            if self._stop.wait(self.interval):
                return
            try:
                conn.sendall(b"x")
            except OSError:
                return  # the client gave up
            self.trickled += 1


def sealed_trickle(
    length: int,
    *,
    burst: int,
    interval: float = 0.2,
    hang_up: bool = False,
    close: bool = False,
) -> TrickleServer:
    """A server answering as a sealed reply of ``length`` bytes: ``burst`` at once, then slowly.

    After the burst it sends at most 50 bytes, one per ``interval`` seconds,
    and hangs up (at once with ``hang_up``): a client that ignores its
    deadline then fails in seconds rather than hanging the suite. It answers
    one request per connection; ``close`` says so in a ``Connection: close``.
    """
    headers = b"X-Encrypted-Payload: true\r\n"
    if close:
        headers += b"Connection: close\r\n"
    return TrickleServer(length, interval, headers=headers, burst=burst, most=0 if hang_up else 50)


class RawServer(SocketServer):
    """A socket server on 127.0.0.1 that answers with scripted bytes.

    ``script(n)`` returns, for the n-th request on a connection, the bytes to
    send and whether to close the connection afterwards. It counts requests.
    """

    def __init__(self, script: Callable[[int], tuple[bytes, bool]]) -> None:
        super().__init__()
        self.script = script

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = b""
        with conn:
            for n in range(100):
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                self._count()
                data, close = self.script(n)
                conn.sendall(data)
                if close:
                    return


def dead_url() -> str:
    """Return a URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class WaitressServer:
    """A real waitress server on 127.0.0.1, which keeps connections alive.

    werkzeug's development server (LiveServer) closes every connection, so
    pooled keep-alive connections are exercised with this one.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], threads: int = 8) -> None:
        from waitress.server import create_server

        self._server = create_server(app, host="127.0.0.1", port=0, threads=threads)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            # close() from another thread pulls the sockets from under select().
            if not self._stopping.is_set():
                raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.effective_port}"

    def __enter__(self) -> WaitressServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        server: Any = self._server
        dispatchers: list[Any] = []

        def stop() -> None:
            # On the loop's own thread: with its map empty the loop returns at
            # once, even with clients' keep-alive connections still open.
            dispatchers.extend(server._map.values())
            server._map.clear()

        server.trigger.pull_trigger(stop)
        self._thread.join(10)
        for dispatcher in dispatchers:  # the loop has ended: no other thread uses them
            dispatcher.close()
        server.close()
        server.task_dispatcher.shutdown()


class HeaderTrickleServer(SocketServer):
    """Answers each request with its status line and headers one byte per ``interval``.

    At most ``most`` bytes are sent, then it hangs up; ``sent`` counts them and
    ``done`` is set when a connection is finished with (the client hung up,
    or everything was sent).
    """

    HEAD = b"HTTP/1.1 200 OK\r\nX-Encrypted-Payload: true\r\nX-Pad: " + b"p" * 400 + b"\r\n\r\n"

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__()
        self.interval = interval
        self.sent = 0
        self.done = threading.Event()

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(5)
                request = b""
                for _ in range(64):  # the request's headers (a GET: no body)
                    if b"\r\n\r\n" in request:
                        break
                    request += conn.recv(65536)
                self._count()
                for byte in self.HEAD:
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
                    self.sent += 1
        except OSError:
            pass  # the client hung up
        finally:
            self.done.set()
