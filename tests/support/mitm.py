"""A man-in-the-middle HTTP/1.1 proxy on 127.0.0.1 that rewrites what passes through.

It sits between a client and one upstream server (the client is pointed at
the proxy instead of the server, as a compromised network path would), reads
each request and answer whole (``Content-Length`` bodies; answers to HEAD and
1xx/204/304 have none), hands it to the test's rewrite function, and
forwards what that returns. Every connection is served on its own thread,
with a bounded number of exchanges and socket timeouts.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, Optional
from urllib.parse import urlsplit

import attrs

#: At most this many exchanges per client connection.
MAX_EXCHANGES = 100


@attrs.define
class Message:
    """One HTTP message as it crosses the proxy: the first line, the headers, the body."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (any case), or ``None``."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def set(self, name: str, value: str) -> None:
        """Replace every header ``name`` with one of ``value``."""
        self.remove(name)
        self.headers.append((name, value))

    def remove(self, name: str) -> None:
        """Remove every header ``name``."""
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]

    def encode(self) -> bytes:
        """The message's bytes, its Content-Length set to its body (none on bodiless answers)."""
        status = self.start.split(" ", 2)[1] if self.start.startswith("HTTP/") else ""
        lines = [
            self.start,
            *(f"{n}: {v}" for n, v in self.headers if n.lower() != "content-length"),
        ]
        if not (status[:1] == "1" or status in ("204", "304")):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


Rewrite = Callable[[Message], Message]


def _unchanged(message: Message) -> Message:
    return message


class MitmProxy:
    """Forwards to ``upstream``, passing each request through ``on_request`` and each
    answer through ``on_response``.

    Attributes:
        requests: every request as it arrived (before rewriting).
        responses: every answer as it arrived from upstream (before rewriting).
    """

    def __init__(
        self,
        upstream: str,
        *,
        on_request: Rewrite = _unchanged,
        on_response: Rewrite = _unchanged,
    ) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.on_request = on_request
        self.on_response = on_response
        self.requests: list[Message] = []
        self.responses: list[Message] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> MitmProxy:
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
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self._upstream, timeout=30) as upstream:
            conn.settimeout(30)
            client, server = _Reader(conn), _Reader(upstream)
            for _ in range(MAX_EXCHANGES):
                request = client.message(None)
                if request is None:
                    return
                self.requests.append(attrs.evolve(request, headers=list(request.headers)))
                upstream.sendall(self.on_request(request).encode())
                method = request.start.split(" ", 1)[0]
                answer = server.message(method)
                if answer is None:
                    return
                self.responses.append(attrs.evolve(answer, headers=list(answer.headers)))
                conn.sendall(self.on_response(answer).encode())


class _Reader:
    """Reads whole HTTP/1.1 messages from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            return False
        self.buffer += chunk
        return bool(chunk)

    def message(self, method: Optional[str]) -> Optional[Message]:
        """The next message; for an answer, ``method`` is its request's (HEAD has no body)."""
        for _ in range(10_000):
            if b"\r\n\r\n" in self.buffer:
                break
            if not self._fill():
                return None
        else:
            return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = [
            (n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])
        ]
        message = Message(lines[0], headers, b"")
        length = int(message.header("Content-Length") or 0)
        status = lines[0].split(" ", 2)[1] if lines[0].startswith("HTTP/") else ""
        if method == "HEAD" or status[:1] == "1" or status in ("204", "304"):
            length = 0
        for _ in range(100_000):
            if len(self.buffer) >= length:
                break
            if not self._fill():
                return None
        message.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return message
