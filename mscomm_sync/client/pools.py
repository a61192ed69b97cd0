"""The transport's connection pools: the status line and headers are read within the deadline.

urllib3's read timeout bounds each socket read, so a server that sends its
status line and headers one byte at a time, each just inside the timeout,
could hold a call for ever (``timeout=1`` lasted 19.6 s against one that
sent a byte every 0.05 s). The pools here make connections whose
``http.client`` response reads the status line and header lines through
:class:`_LineReader`, which before every socket read sets the socket's
timeout to what is left of the call's deadline (or the attempt's read
timeout, if shorter). When the deadline passes the read times out as any
read would, and the transport, seeing the deadline gone, reports it as
:class:`~mscomm_sync.errors.DeadlineExceededError`. The body is read by
:mod:`mscomm_sync.client.answer`, which bounds it the same way.

The deadline reaches the response through a thread-local set by the
transport around each attempt (:data:`reading`): the thread that sends
a request is the one that reads its answer. Outside an attempt (plain
``http://`` calls go through other adapters) nothing changes. This uses
``http.client``'s documented ``response_class`` hook and urllib3's pool and
connection classes, which have this shape from urllib3 2.3 to 2.8.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from typing import TYPE_CHECKING, Any, Optional

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .deadline import Bound

__all__ = ["deadline_pools", "reading"]


class _Reading(threading.local):
    """What answers read on this thread read their heads within (see :data:`reading`)."""

    #: The attempt's deadline, or ``None`` outside an attempt.
    deadline: Optional[Bound] = None


#: The thread's reading deadline. The transport sets ``reading.deadline``
#: before an attempt and resets it to ``None`` after (two attribute stores: a
#: context manager would be three more Python functions per call, each one
#: more code object for a call that arrives cold to fetch).
reading = _Reading()


class _LineReader:
    """``readline`` over a buffered socket file, with every socket wait capped by the deadline.

    Only what ``http.client`` reads before the body goes through it (the
    status line, interim responses, header lines); it is swapped out again
    before the body is read.
    """

    __slots__ = ("_deadline", "_fp", "_sock", "read_timeout")

    def __init__(self, fp: Any, sock: Any, deadline: Bound, read_timeout: Optional[float]) -> None:
        self._fp = fp
        self._sock = sock
        self._deadline = deadline
        #: The socket's timeout before the headers: the attempt's read timeout.
        self.read_timeout = read_timeout

    def readline(self, limit: int = -1) -> bytes:
        fp = self._fp
        peeked = fp.peek()  # what is buffered, without a socket read if anything is
        if peeked.find(b"\n", 0, limit if limit >= 0 else len(peeked)) >= 0:
            line: bytes = fp.readline(limit)  # the whole line is here: no waiting
            return line
        parts: list[bytes] = []
        size = 0
        while limit < 0 or size < limit:
            self.arm()
            peeked = fp.peek()  # at most one socket read, bounded by the timeout just set
            if not peeked:
                break  # the server hung up; http.client reports it
            room = len(peeked) if limit < 0 else min(len(peeked), limit - size)
            end = peeked.find(b"\n", 0, room)
            take = end + 1 if end >= 0 else room
            parts.append(fp.read(take))
            size += take
            if end >= 0:
                break
        return b"".join(parts)

    def arm(self) -> None:
        """Cap the next socket wait by what is left of the deadline (or the read timeout)."""
        left = self._deadline.remaining()
        if left <= 0:
            raise TimeoutError("the call's deadline passed while reading the headers")
        timeout = self.read_timeout
        self._sock.settimeout(left if timeout is None else min(left, timeout))

    def close(self) -> None:
        self._fp.close()


class _Response(http.client.HTTPResponse):
    """An ``http.client`` response that reads what precedes the body within the deadline."""

    # ``http.client`` sets ``fp`` first thing in ``__init__``; a signal that
    # lands before that (Ctrl-C in a call) leaves an object whose finaliser
    # calls ``close()``, which reads ``fp``. The class default keeps that
    # close quiet instead of an "Exception ignored" traceback on stderr.
    if not TYPE_CHECKING:  # the stubs type ``fp`` as always set
        fp = None

    def begin(self) -> None:
        deadline = reading.deadline
        sock = getattr(self.fp, "raw", None)
        sock = getattr(sock, "_sock", None)
        if deadline is None or sock is None:
            super().begin()
            return
        fp = self.fp
        before: Optional[float] = sock.gettimeout()  # the attempt's read timeout
        left = deadline.remaining()
        if left <= 0:
            raise TimeoutError("the call's deadline passed while reading the headers")
        # The first wait is capped by the deadline; when the read timeout is
        # already shorter the socket needs no change (a syscall saved).
        capped = before is None or left < before
        if capped:
            sock.settimeout(left)
        try:
            head = fp.peek()  # the first socket read, within the deadline
            if b"\r\n\r\n" in head and head[9:10] != b"1":
                # The usual case: the whole head (status line and headers) came in
                # that read and it is not an interim 1xx, so http.client can parse it
                # without waiting, and no line goes through the Python reader.
                super().begin()
                return
            capped = True  # the reader arms the socket before each wait
            self.fp = _LineReader(fp, sock, deadline, before)  # type: ignore[assignment]
            super().begin()
        finally:
            if self.fp is not None:  # http.client closes it for a bodiless answer
                self.fp = fp
            if capped:
                with contextlib.suppress(OSError):
                    sock.settimeout(before)  # as it was, for the body


class _Connection(HTTPConnection):
    response_class = _Response


class _TLSConnection(HTTPSConnection):
    response_class = _Response


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


def deadline_pools(manager: PoolManager) -> PoolManager:
    """Make ``manager`` build pools whose answers read their headers within the deadline."""
    manager.pool_classes_by_scheme = dict(_POOLS)
    return manager
