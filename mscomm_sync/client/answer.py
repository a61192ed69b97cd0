"""Reading an answer's body within the call's deadline.

urllib3's read timeout bounds each socket operation, not the read as a whole:
a server that trickles its body (one byte every 0.2 s) can keep a single
``read()`` going for as long as it likes. :func:`read_answer` reads the body
in pieces of at most one socket read each (``read1``) and, before each piece,
sets the socket's timeout to what is left of the deadline (or to the
attempt's read timeout, if that is shorter). When the deadline passes it
raises :class:`~mscomm_sync.errors.DeadlineExceededError` and closes the
connection. Any other failure of the body (a reset, a short body, a stall
past the attempt's timeout, a TLS error) is translated, here and once, into
:class:`~mscomm_sync.client.failures.AttemptFailed`.

A sealed answer of 64 KiB or more with a ``Content-Length`` is read straight
into one ``bytearray`` instead (``readinto1`` on the buffered socket file of
the ``http.client`` response urllib3 wraps, again one socket read per turn,
with the same timeouts; the buffer grows as the bytes arrive, see
:mod:`mscomm_sync.buffers`): no pieces to join, and half the memory. Pieces
cost a second copy, and the extra megabytes made glibc hand memory back and
fault it in again on every call (see ``docs/performance.md``).

Nothing is read past the call's size limit: a sealed answer is read as the
bytes that were sent (never decoded: the seal is over those bytes), an
allowed plaintext one is decoded as it is read, at most 8 KiB of compressed
bytes at a time, so a compression bomb costs at most the limit and about
8 MiB more (gzip and deflate expand at most about 1,000 times); past the
limit the read stops with :class:`~mscomm_sync.errors.ResponseTooLargeError`.
A declared length above the limit is refused before this is reached
(:mod:`mscomm_sync.client.transport`).

A response without a socket to bound (a test double, such as ``responses``
makes) is read in one go.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union, cast

import requests
from requests import Response
from urllib3.exceptions import HTTPError, IncompleteRead, ReadTimeoutError

from ..buffers import BodyBuffer, BufferPool
from ..envelope.limits import TAG_BYTES
from ..errors import DeadlineExceededError, ResponseTooLargeError
from .deadline import Bound
from .failures import AttemptFailed

__all__ = ["read_answer"]

#: Largest piece asked for at once. ``read1(n)`` allocates ``n`` bytes before
#: it reads, so asking for a whole 1 MiB body per piece costs more than
#: the copy a few 256 KiB pieces add (measured on loopback).
_PIECE = 256 * 1024
#: Largest compressed piece asked for at once from an encoded plaintext answer,
#: so that decoding one piece cannot make much more than the limit.
_ENCODED_PIECE = 8 * 1024
#: Smallest sealed answer read straight into one buffer.
_INTO_BUFFER_MIN = 64 * 1024
#: What a body read may raise that means the transport failed mid-answer.
_BROKEN = (HTTPError, OSError, http.client.HTTPException, requests.RequestException)


def read_answer(
    response: Response,
    *,
    deadline: Bound,
    limit: int,
    read_timeout: Optional[float] = None,
    sealed: bool = False,
    buffers: Optional[BufferPool] = None,
    overhead: Optional[int] = None,
) -> Union[bytes, bytearray, memoryview]:
    """Read ``response``'s whole body, within ``deadline`` and ``limit``.

    Args:
        response: a response whose body has not been read yet.
        deadline: the call's deadline.
        limit: the largest plaintext body accepted (a sealed one may carry
            ``overhead`` more bytes).
        read_timeout: the attempt's timeout per socket read; the deadline
            caps it.
        sealed: the body is a sealed answer, which the caller only opens: it
            is read as sent, never decoded, and a large one with a
            ``Content-Length`` may come back as a ``bytearray`` (or a
            ``memoryview``, with ``buffers``), read with one copy (a few
            more past 2 MiB).
        buffers: for a sealed answer, where to take a used buffer to read
            into; a body read into a buffer is then always a ``memoryview``,
            which the caller gives back to the pool once it is done with it
            (a failed read gives its buffer back itself).
        overhead: how much longer than its plaintext a sealed body may be:
            v1's 16-byte tag by default; v2's tags and sealed header fields.

    Returns:
        The body (also stored as the response's content).

    Raises:
        DeadlineExceededError: the deadline passed before the body was read.
        ResponseTooLargeError: the body went past ``limit``.
        AttemptFailed: the body broke off, or stalled past ``read_timeout``.
    """
    raw = response.raw
    try:
        extra = (TAG_BYTES if overhead is None else overhead) if sealed else 0
        data = _read(response, raw, deadline, read_timeout, sealed, buffers, limit, extra)
    except BaseException:
        response.close()
        raise
    # The buffer stands in until the caller puts the opened body there.
    cast(Any, response)._content = data
    cast(Any, response)._content_consumed = True
    return data


def _read(
    response: Response,
    raw: Any,
    deadline: Bound,
    read_timeout: Optional[float],
    sealed: bool,
    buffers: Optional[BufferPool],
    limit: int,
    extra: int,
) -> Union[bytes, bytearray, memoryview]:
    most = limit + extra
    sock = _socket_of(raw) if hasattr(raw, "stream") else None
    if sock is None or not hasattr(raw, "read1"):
        # No socket to bound (a mocked response): one read.
        with _broken_off():
            data = (
                raw.read(decode_content=not sealed) if hasattr(raw, "stream") else response.content
            )
        if len(data) > most:
            raise ResponseTooLargeError(deadline.service, limit)
        return data
    into = _into(raw) if sealed else None
    if into is not None:
        return _read_into(raw, into, sock, deadline, read_timeout, buffers)
    encoded = raw.headers.get("Content-Encoding", "identity").lower() != "identity"
    piece = _ENCODED_PIECE if encoded and not sealed else _PIECE
    pieces = _Pieces(raw, sock, deadline, read_timeout, decode=not sealed, piece=piece)
    return pieces.read(most, limit)


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


def _into(raw: Any) -> Optional[http.client.HTTPResponse]:
    """Return the ``http.client`` response under ``raw`` if its body can be read directly."""
    fp = getattr(raw, "_fp", None)
    length = getattr(raw, "length_remaining", None)
    if (
        not isinstance(fp, http.client.HTTPResponse)
        or not hasattr(fp.fp, "readinto1")
        or type(length) is not int
        or length < _INTO_BUFFER_MIN
        or fp.length != length  # nothing read yet
        or fp.chunked
        or raw.headers.get("Content-Encoding", "identity").lower() != "identity"
    ):
        return None
    return fp


def _read_into(
    raw: Any,
    fp: http.client.HTTPResponse,
    sock: Any,
    deadline: Bound,
    read_timeout: Optional[float],
    buffers: Optional[BufferPool],
) -> Union[bytearray, memoryview]:
    length = cast(int, raw.length_remaining)
    # A kept buffer if one fits; else one that grows as the bytes arrive,
    # not to the declared length.
    buffer = BodyBuffer(length, reuse=None if buffers is None else buffers.take(length))
    try:
        _fill(fp, sock, deadline, read_timeout, buffer)
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
    fp: http.client.HTTPResponse,
    sock: Any,
    deadline: Bound,
    read_timeout: Optional[float],
    buffer: BodyBuffer,
) -> None:
    while buffer.missing:
        left = deadline.remaining()
        if left <= 0:
            raise deadline.exceeded(sent=True)
        by_deadline = read_timeout is None or left <= read_timeout
        sock.settimeout(left if by_deadline else read_timeout)
        try:
            # At most one socket read per turn (what the timeout bounds):
            # what http.client has buffered, else one recv_into.
            with buffer.space() as space:
                n = fp.fp.readinto1(space)
        except socket.timeout as exc:
            if by_deadline:
                raise deadline.exceeded(sent=True) from exc
            raise AttemptFailed.mid_answer(exc, "ReadTimeout") from exc
        except OSError as exc:  # a reset, a TLS error (ssl.SSLError is an OSError)
            raise AttemptFailed.mid_answer(exc) from exc
        if not n:
            short = IncompleteRead(buffer.got, buffer.missing)
            raise AttemptFailed.mid_answer(short) from None
        buffer.filled(n)


class _Pieces:
    """Reads a body one socket read's worth at a time, each within the deadline."""

    def __init__(
        self,
        raw: Any,
        sock: Any,
        deadline: Bound,
        read_timeout: Optional[float],
        *,
        decode: bool,
        piece: int,
    ) -> None:
        self.raw = raw
        self.sock = sock
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.decode = decode
        self.piece = piece

    def read(self, most: int, limit: int) -> bytes:
        """Return the body, at most ``most`` bytes; past that raise ResponseTooLargeError."""
        raw, deadline, read_timeout = self.raw, self.deadline, self.read_timeout
        read1: Callable[..., bytes] = raw.read1
        pieces: list[bytes] = []
        total = 0
        while True:
            length: Optional[int] = raw.length_remaining
            if length == 0:
                break
            left = deadline.remaining()
            if left <= 0:
                raise deadline.exceeded(sent=True)
            by_deadline = read_timeout is None or left <= read_timeout
            self.sock.settimeout(left if by_deadline else read_timeout)
            amount = self.piece if length is None else min(length, self.piece)
            try:
                piece = read1(amount, decode_content=self.decode)
            except ReadTimeoutError as exc:
                if by_deadline:
                    raise deadline.exceeded(sent=True) from exc
                raise AttemptFailed.mid_answer(exc, "ReadTimeout") from exc
            except _BROKEN as exc:
                raise AttemptFailed.mid_answer(exc) from exc
            if not piece:
                break
            total += len(piece)
            if total > most:
                raise ResponseTooLargeError(deadline.service, limit)
            pieces.append(piece)
        return b"".join(pieces)  # one piece is returned as is, without a copy


@contextlib.contextmanager
def _broken_off() -> Iterator[None]:
    try:
        yield
    except (DeadlineExceededError, AttemptFailed):
        raise
    except _BROKEN as exc:
        raise AttemptFailed.mid_answer(exc) from exc
