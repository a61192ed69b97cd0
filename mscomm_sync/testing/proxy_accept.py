"""A fault proxy's listening socket, and the one thread that accepts on it.

The acceptor's thread alone listens, accepts and closes the listening
socket, so no thread ever closes a socket another one is waiting on. Other
threads ask it to start or stop listening (:meth:`Acceptor.listen`), wake it
through a socket pair, and wait until it has. While it is not listening it
keeps the port bound with a socket that does not listen: the kernel refuses
connections (``ECONNREFUSED``) and no other process can take the port.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Callable, Optional

from .proxy_link import POLL
from .proxy_types import Counters, ProxyError

__all__ = ["Acceptor"]

_BACKLOG = 128
#: Connections accepted in one turn, before the thread looks at its requests again.
_ACCEPT_BURST = 64


class Acceptor:
    """Listen on ``host:port`` and hand each accepted connection to ``on_connection``.

    Args:
        host: the address to listen on.
        port: the port, ``0`` for a free one.
        on_connection: called on the acceptor's thread with each accepted socket.
        counters: where to record whether it is refusing.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_connection: Callable[[socket.socket], None],
        counters: Counters,
    ) -> None:
        self.host = host
        self.port = port
        self._on_connection = on_connection
        self._counters = counters
        self._changed = threading.Condition(threading.Lock())
        self._listening = False
        self._wanted = False  # what listen() last asked for
        self._asked = 0  # how many times it was asked; the thread has done `_done` of them
        self._done = 0
        self._error: Optional[ProxyError] = None
        self._stopping = False
        self._sock: Optional[socket.socket] = None
        self._wake: Optional[tuple[socket.socket, socket.socket]] = None
        self._thread: Optional[threading.Thread] = None

    def start(self, listening: bool) -> None:
        """Bind the port (listening on it, or not), then start the thread.

        Raises:
            OSError: the address cannot be bound.
        """
        sock = self._bind()
        try:
            if listening:
                sock.listen(_BACKLOG)
            self._wake = socket.socketpair()
        except BaseException:
            sock.close()
            raise
        for end in self._wake:
            end.setblocking(False)
        self._sock, self._listening, self._wanted = sock, listening, listening
        self._counters.set_refusing(not listening)
        self._thread = threading.Thread(
            target=self._serve, name=f"mscomm-fault-proxy-{self.port}", daemon=True
        )
        self._thread.start()

    def listen(self, listening: bool, timeout: float) -> None:
        """Start (``True``) or stop listening, and wait until the thread has.

        Raises:
            ProxyError: the port could not be listened on again, or the thread
                did not answer within ``timeout`` seconds.
        """
        with self._changed:
            self._wanted = listening
            self._asked += 1
            asked = self._asked
        self._nudge()
        with self._changed:
            answered = self._changed.wait_for(
                lambda: self._done >= asked or self._stopping, timeout
            )
            error = self._error if self._done >= asked else None
        if not answered:
            raise ProxyError(
                f"the fault proxy did not change its listening within {timeout:g}s",
                port=self.port,
                reason="threads still running",
            )
        if error is not None:
            raise error

    def stop(self, timeout: float) -> bool:
        """Stop the thread (it closes the listening socket); return whether it has ended."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._nudge()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._wake is not None:
            for end in self._wake:
                end.close()
        return True

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The acceptor's thread, once started."""
        return () if self._thread is None else (self._thread,)

    # -- the thread --------------------------------------------------------------

    def _serve(self) -> None:
        assert self._wake is not None
        wake = self._wake[0]
        try:
            while True:
                with self._changed:
                    if self._stopping:
                        return
                    asked, wanted = self._asked, self._wanted
                if asked != self._done:
                    error = self._apply(wanted)
                    with self._changed:
                        self._done, self._error = asked, error
                        self._changed.notify_all()
                sock = self._sock if self._listening else None
                ready, _, _ = select.select([wake] if sock is None else [wake, sock], [], [], POLL)
                if wake in ready:
                    with contextlib.suppress(OSError):
                        wake.recv(4096)
                if sock is not None and sock in ready:
                    self._accept(sock)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _apply(self, listening: bool) -> Optional[ProxyError]:
        if listening == self._listening and self._sock is not None:
            return None
        try:
            if not listening and self._sock is not None:
                self._sock.close()  # connections still queued in it are reset
                self._sock = None
            if self._sock is None:
                self._sock = self._bind()  # bound, not listening: connections are refused
            if listening:
                self._sock.listen(_BACKLOG)
            self._listening = listening
            return None
        except OSError as exc:
            self._listening = False
            return ProxyError(
                f"the fault proxy cannot {'listen on' if listening else 'hold'} port"
                f" {self.port} ({type(exc).__name__})",
                port=self.port,
                reason="port taken",
            )
        finally:
            self._counters.set_refusing(not self._listening)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client gave up before it was accepted
                continue
            self._on_connection(conn)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        return sock

    def _nudge(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):  # full (already nudged) or closed
                self._wake[1].send(b"x")

    def __repr__(self) -> str:
        return f"<Acceptor {self.host}:{self.port} listening={self._listening}>"
