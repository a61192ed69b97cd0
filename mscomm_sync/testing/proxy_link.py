"""One connection through a fault proxy: the client's socket, the server's, and two pumps.

A link has at most two threads: the first sets the connection up (and, for
a blackhole, only drains the client) and then pumps the client's bytes to
the server; the second pumps the server's bytes to the client. Neither ever
closes a socket the other may be using: the last one to finish closes both,
with ``SO_LINGER`` 0 (an RST) when the link was reset. Ending a link from
another thread (:meth:`Link.end`) only sets a flag and shuts the sockets for
reading, which wakes a pump blocked in ``recv`` without closing anything;
every other wait is on the link's ``Event`` or a socket timeout of
:data:`POLL`, so a link always ends promptly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from typing import Callable, Optional

from .proxy_types import Counters, Fault

__all__ = ["POLL", "Link"]

log = logging.getLogger("mscomm_sync.testing")

#: The longest a pump blocks in one socket call before it looks at its link again.
POLL = 0.2
#: The most read from a socket at once.
CHUNK = 64 * 1024
#: How each way of ending a link closes its sockets: with an RST, or with a FIN.
_RESETS = {"reset": True, "abort": True, "drop": False, "closed": False}
_RST = struct.pack("ii", 1, 0)


class Link:
    """One accepted connection and its connection to the server.

    Args:
        client: the accepted socket.
        fault: what to do to this connection (``Fault()`` for nothing).
        upstream: the server's ``(host, port)``.
        connect_timeout: seconds to wait for the server to accept.
        counters: the proxy's counts.
        name: a prefix for the link's thread names.
        on_done: called with the link once both its sockets are closed.
    """

    def __init__(
        self,
        client: socket.socket,
        *,
        fault: Fault,
        upstream: tuple[str, int],
        connect_timeout: float,
        counters: Counters,
        name: str,
        on_done: Callable[[Link], None],
    ) -> None:
        self._client = client
        self._server: Optional[socket.socket] = None
        self.fault = fault
        self._upstream = upstream
        self._connect_timeout = connect_timeout
        self._counters = counters
        self._name = name
        self._on_done = on_done
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._ending: Optional[str] = None
        self._running = 0
        self._sent = {"upstream": 0, "downstream": 0}
        self._threads: list[threading.Thread] = []
        counters.add("connections")
        counters.add("active")
        kinds = fault.kinds
        if not kinds:
            counters.add("clean")
        for kind, count in (("latency", "delayed"), ("blackhole", "blackholed"),
                            ("trickle", "trickled")):  # fmt: skip
            if kind in kinds:
                counters.add(count)

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The link's threads (one or two)."""
        with self._lock:
            return tuple(self._threads)

    def start(self) -> None:
        """Start the link's first thread."""
        self._client.settimeout(POLL)
        self._spawn(self._run, "up")

    def end(self, how: str = "drop") -> None:
        """Ask the link to end, from any thread; it closes its sockets within :data:`POLL`.

        Args:
            how: ``"drop"`` closes both sides with a FIN, ``"reset"`` (the
                fault) and ``"abort"`` (an error) with an RST.
        """
        with self._lock:
            if self._ending is None:
                self._ending = how
            sockets = (self._client, self._server)
        self._ended.set()
        for sock in sockets:  # wakes a pump blocked in recv; closes nothing
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)

    # -- the threads ---------------------------------------------------------

    def _spawn(self, target: Callable[[], None], role: str) -> bool:
        with self._lock:
            if self._running and self._ending is not None:
                return False  # ending already: no new pump
            self._running += 1
            thread = threading.Thread(target=self._guard, args=(target,),
                                      name=f"{self._name}-{role}", daemon=True)  # fmt: skip
            self._threads.append(thread)
        thread.start()
        return True

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:  # a bug here must not go unseen, nor leave sockets open
            log.exception(
                "fault proxy link %s failed", self._name, extra={"mscomm.link": self._name}
            )
            self.end("abort")
        finally:
            self._finish()

    def _run(self) -> None:
        fault = self.fault
        if fault.blackhole:
            while self._recv(self._client):  # read and drop, until EOF or the end
                pass
            return
        if fault.reset_after == 0 and fault.reset_direction == "upstream":
            self.end("reset")
            return
        if fault.latency > 0 and self._ended.wait(fault.latency):
            return
        try:
            server = socket.create_connection(self._upstream, timeout=self._connect_timeout)
        except OSError:
            self._counters.add("upstream_failures")
            self.end("abort")
            return
        server.settimeout(POLL)
        with self._lock:
            self._server = server
        if self._ended.is_set():
            return
        if self._spawn(lambda: self._pump(server, self._client, "downstream"), "down"):
            self._pump(self._client, server, "upstream")

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        fault = self.fault
        trickle = fault.trickle if fault.trickle_direction == direction else None
        reset = fault.reset_after if fault.reset_direction == direction else None
        next_piece = 0.0  # when a trickle may send its next piece: the first goes at once
        while True:
            data = self._recv(src)
            if data is None:
                return
            if not data:  # the sender is done: say so to the other side
                with self._lock:
                    if self._ending is None:
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                return
            if fault.chunk_latency > 0 and self._ended.wait(fault.chunk_latency):
                return
            view = memoryview(data)
            while view:
                piece = view[:trickle] if trickle is not None else view
                if reset is not None:
                    piece = piece[: max(reset - self._sent[direction], 0)]
                    if not piece:
                        self.end("reset")
                        return
                if trickle is not None and self._ended.wait(next_piece - time.monotonic()):
                    return
                if not self._send(dst, piece, direction):
                    return
                next_piece = time.monotonic() + fault.trickle_interval
                view = view[len(piece) :]
                if reset is not None and self._sent[direction] >= reset:
                    self.end("reset")
                    return

    def _recv(self, src: socket.socket) -> Optional[bytes]:
        """Return the next bytes from ``src``, ``b""`` at its end, ``None`` if the link ends."""
        while not self._ended.is_set():
            try:
                data = src.recv(CHUNK)
            except socket.timeout:
                continue
            except OSError:  # a reset from that side: pass it on
                self.end("abort")
                return None
            return None if not data and self._ended.is_set() else data
        return None

    def _send(self, dst: socket.socket, piece: memoryview, direction: str) -> bool:
        """Send all of ``piece``; ``False`` if the link ended first (nothing more is sent)."""
        counter = f"bytes_{direction}"
        while piece:
            with self._lock:  # so that no byte passes once the link is ending
                if self._ending is not None:
                    return False
                # Counted before it can reach the peer, so that a test that has
                # read an answer also sees it counted; corrected below if short.
                self._counters.add(counter, len(piece))
                try:
                    sent = dst.send(piece)
                except socket.timeout:
                    sent = 0
                except OSError:
                    sent = -1
                if sent != len(piece):
                    self._counters.add(counter, max(sent, 0) - len(piece))
            if sent < 0:
                self.end("abort")
                return False
            self._sent[direction] += sent
            piece = piece[sent:]
        return True

    def _finish(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running:
                return
            how = self._ending if self._ending is not None else "closed"
            sockets = [s for s in (self._client, self._server) if s is not None]
        # Counted before the sockets close, so the peer never sees an RST uncounted.
        if how == "reset":
            self._counters.add("reset")
        elif how == "drop":
            self._counters.add("dropped")
        self._counters.add("active", -1)
        for sock in sockets:
            if _RESETS[how]:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            else:
                _drain(sock)  # closing with unread bytes would send an RST, not a FIN
            sock.close()
        self._on_done(self)

    def __repr__(self) -> str:
        return f"<Link {self._name} kinds={sorted(self.fault.kinds)} ending={self._ending!r}>"


def _drain(sock: socket.socket) -> None:
    """Read and drop what has arrived on ``sock`` and not been read, without waiting."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        for _ in range(64):
            if not sock.recv(CHUNK):
                return
