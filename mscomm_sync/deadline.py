"""The call's deadline, and reading an answer's body within it.

urllib3's read timeout bounds each socket operation, not the read as a whole:
a server that trickles its body (one byte every 0.2 s) can keep a single
``read()`` going for as long as it likes. :func:`read_body` reads the body in
pieces of at most one socket read each (``read1``) and, before each piece,
sets the socket's timeout to what is left of the deadline (or to the
attempt's read timeout, if that is shorter). When the deadline passes it
raises :class:`~mscomm_sync.errors.DeadlineExceededError` and closes the
connection.

``HTTPResponse.read1`` arrived in urllib3 2.3, the lowest release we support.
A response without it (a test double) is read in one go.

A sealed answer of 64 KiB or more with a ``Content-Length`` is read straight
into one ``bytearray`` instead (``readinto1`` on the buffered socket file of
the ``http.client`` response urllib3 wraps, again one socket read per turn,
with the same timeouts; the buffer grows as the bytes arrive, see
:mod:`mscomm_sync.body_buffer`): no pieces to join, and half the
memory. Pieces cost a second copy, and the extra megabytes made glibc hand
memory back and fault it in again on every call (see
``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union, cast

import attrs
import requests
from requests import Response
from requests.exceptions import ChunkedEncodingError, ContentDecodingError
from urllib3.exceptions import (
    DecodeError,
    IncompleteRead,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from .body_buffer import BodyBuffer, BufferPool
from .errors import DeadlineExceededError

__all__ = ["Deadline", "read_body"]

#: Largest piece asked for at once. ``read1(n)`` allocates ``n`` bytes before
#: it reads, so asking for a whole 1 MiB body per piece costs more than
#: the copy a few 256 KiB pieces add (measured on loopback).
_PIECE = 256 * 1024
#: Smallest sealed answer read straight into one buffer (``into_buffer``).
_INTO_BUFFER_MIN = 64 * 1024


@attrs.frozen(kw_only=True)
class Deadline:
    """The time one call must finish by.

    Attributes:
        service: the target service (for the error).
        at: the time on ``clock`` the call must finish by.
        seconds: the call's whole deadline in seconds (for the error).
        clock: the monotonic clock ``at`` is read on.
    """

    service: str
    at: float
    seconds: float
    clock: Callable[[], float] = time.monotonic

    def remaining(self) -> float:
        """Return the seconds left (negative once the deadline has passed)."""
        return self.at - self.clock()

    def exceeded(self) -> DeadlineExceededError:
        """Return the error that reports this deadline as passed."""
        return DeadlineExceededError(self.service, self.seconds)


def read_body(
    response: Response,
    *,
    deadline: Optional[Deadline] = None,
    read_timeout: Optional[float] = None,
    into_buffer: bool = False,
    buffers: Optional[BufferPool] = None,
) -> Union[bytes, bytearray, memoryview]:
    """Read ``response``'s whole body, within ``deadline``.

    Args:
        response: a response whose body has not been read yet.
        deadline: the call's deadline; ``None`` reads with the socket's
            timeout as it is.
        read_timeout: the attempt's timeout per socket read; the deadline
            caps it.
        into_buffer: the caller only reads the body (a sealed answer it
            opens): a large one with a ``Content-Length`` may come back as
            a ``bytearray`` (or a ``memoryview``, with ``buffers``), read
            with one copy (a few more past 2 MiB).
        buffers: with ``into_buffer``, where to take a used buffer to read
            into; a body read into a buffer is then always a ``memoryview``,
            which the caller gives back to the pool once it is done with it
            (a failed read gives its buffer back itself).

    Returns:
        The body (also stored as the response's content).

    Raises:
        DeadlineExceededError: the deadline passed before the body was read.
        requests.RequestException: the transport failed, as requests maps it
            (a read timeout that is not the deadline's becomes a
            ``requests.ConnectionError``, as in ``Response.iter_content``).
    """
    raw = response.raw
    if not hasattr(raw, "stream"):
        return response.content
    sock = _socket_of(raw)
    try:
        read1 = _reader(raw) if deadline is not None and sock is not None else None
        into = _into(raw) if into_buffer and read1 is not None else None
        data: Union[bytes, bytearray, memoryview]
        if deadline is not None and into is not None:
            data = _read_into(response, into, sock, deadline, read_timeout, buffers)
        elif deadline is not None and read1 is not None:
            data = _read_pieces(response, read1, sock, deadline, read_timeout)
        else:
            # No deadline, or no socket to bound (a mocked response): one read.
            with _requests_errors(response):
                data = raw.read(decode_content=True)
    except BaseException:
        response.close()
        raise
    # The buffer stands in until the caller puts the opened body there.
    cast(Any, response)._content = data
    cast(Any, response)._content_consumed = True
    return data


def _socket_of(raw: Any) -> Any:
    """Return the socket ``raw``'s body arrives on, or ``None`` (a test double)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        # An answer with "Connection: close": http.client has already let go
        # of the connection's socket, and only the answer's socket file
        # holds it. Without it the body would be read with no deadline.
        socket_io = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(socket_io, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _reader(raw: Any) -> Optional[Callable[[int], bytes]]:
    """Return a function reading at most one socket read's worth of body, if there is one."""
    if hasattr(raw, "read1"):
        return lambda amount: cast(bytes, raw.read1(amount, decode_content=True))
    return None


def _into(raw: Any) -> Optional[http.client.HTTPResponse]:
    """Return the ``http.client`` response under ``raw`` if its body can be read directly."""
    fp = getattr(raw, "_fp", None)
    length = getattr(raw, "length_remaining", None)
    if (
        not isinstance(fp, http.client.HTTPResponse)
        or not hasattr(fp.fp, "readinto1")
        or length.__class__ is not int
        or length < _INTO_BUFFER_MIN
        or fp.length != length  # nothing read yet
        or fp.chunked
        or raw.headers.get("Content-Encoding", "identity").lower() != "identity"
    ):
        return None
    return fp


def _read_into(
    response: Response,
    fp: http.client.HTTPResponse,
    sock: Any,
    deadline: Deadline,
    read_timeout: Optional[float],
    buffers: Optional[BufferPool],
) -> Union[bytearray, memoryview]:
    raw = response.raw
    length = cast(int, raw.length_remaining)
    # A kept buffer if one fits; else one that grows as the bytes arrive,
    # not to the declared length.
    buffer = BodyBuffer(length, reuse=None if buffers is None else buffers.take(length))
    try:
        _fill(response, fp, sock, deadline, read_timeout, buffer)
    except BaseException:
        if buffers is not None:  # nothing else holds it yet: keep it for the next answer
            buffers.give(buffer.body)
        raise
    # Leave http.client and urllib3 as if they had read the body themselves:
    # http.client closes its file, urllib3 returns the connection to the pool.
    fp.length = 0
    fp.read()
    raw.length_remaining = 0
    if hasattr(raw, "_fp_bytes_read"):
        raw._fp_bytes_read += length
    raw.release_conn()
    # Without reuse the buffer ends exactly as long as the body.
    return buffer.body if buffers is None else buffer.view()


def _fill(
    response: Response,
    fp: http.client.HTTPResponse,
    sock: Any,
    deadline: Deadline,
    read_timeout: Optional[float],
    buffer: BodyBuffer,
) -> None:
    raw = response.raw
    with _requests_errors(response, timeouts=False):
        while buffer.missing:
            left = deadline.remaining()
            if left <= 0:
                raise deadline.exceeded()
            by_deadline = read_timeout is None or left <= read_timeout
            sock.settimeout(left if by_deadline else read_timeout)
            try:
                # At most one socket read per turn (what the timeout bounds):
                # what http.client has buffered, else one recv_into.
                with buffer.space() as space:
                    n = fp.fp.readinto1(space)
            except socket.timeout as exc:
                if by_deadline:
                    raise deadline.exceeded() from exc
                pool: Any = getattr(raw, "_pool", None)
                timeout = ReadTimeoutError(pool, None, "Read timed out.")
                raise requests.ConnectionError(timeout, request=response.request) from exc
            except ssl.SSLError as exc:  # as urllib3 reports it, mapped below
                raise SSLError(exc) from exc
            except OSError as exc:  # as urllib3 reports a connection broken mid-body
                raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
            if not n:
                short = IncompleteRead(buffer.got, buffer.missing)
                raise ProtocolError(f"Connection broken: {short!r}", short)
            buffer.filled(n)


def _read_pieces(
    response: Response,
    read1: Callable[[int], bytes],
    sock: Any,
    deadline: Deadline,
    read_timeout: Optional[float],
) -> bytes:
    raw = response.raw
    pieces: list[bytes] = []
    while True:
        length: Optional[int] = raw.length_remaining
        if length == 0:
            break
        left = deadline.remaining()
        if left <= 0:
            raise deadline.exceeded()
        by_deadline = read_timeout is None or left <= read_timeout
        sock.settimeout(left if by_deadline else read_timeout)
        amount = _PIECE if length is None else min(length, _PIECE)
        try:
            with _requests_errors(response, timeouts=False):
                piece = read1(amount)
        except ReadTimeoutError as exc:
            if by_deadline:
                raise deadline.exceeded() from exc
            raise requests.ConnectionError(exc, request=response.request) from exc
        if not piece:
            break
        pieces.append(piece)
    return b"".join(pieces)  # one piece is returned as is, without a copy


@contextlib.contextmanager
def _requests_errors(response: Response, *, timeouts: bool = True) -> Iterator[None]:
    # urllib3's errors mapped as requests maps them in Response.iter_content;
    # timeouts=False lets a ReadTimeoutError through for the caller to judge.
    try:
        yield
    except ProtocolError as exc:
        raise ChunkedEncodingError(exc, request=response.request) from exc
    except DecodeError as exc:
        raise ContentDecodingError(exc, request=response.request) from exc
    except ReadTimeoutError as exc:
        if not timeouts:
            raise
        raise requests.ConnectionError(exc, request=response.request) from exc
    except SSLError as exc:
        raise requests.exceptions.SSLError(exc, request=response.request) from exc
