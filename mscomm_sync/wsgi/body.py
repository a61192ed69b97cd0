"""Read a request body from a WSGI environ, within a size limit.

Trust model: ``Content-Length`` and the body come from the client and may lie.
The declared length is checked against the limit before a byte is read; a body
without one (chunked) is read only until it passes the limit; a body shorter
than its declared length is refused rather than padded or trusted.
"""

from __future__ import annotations

import io
from typing import IO, Any, Optional, Union

from .gunicorn import read_gunicorn_body

__all__ = ["BodyRefused", "check_passthrough_body", "read_request_body"]

_CHUNK = 64 * 1024
_MAX_LENGTH_DIGITS = 19


class BodyRefused(Exception):
    """The body cannot be accepted; ``status`` says how to answer (400 or 413).

    Attributes:
        status: 400 (malformed or short) or 413 (too large).
        reason: why, for the local log only.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_passthrough_body(environ: dict[str, Any], limit: int) -> None:
    """Hold a request that goes to the app unopened (plaintext) to ``limit`` bytes.

    A declared ``Content-Length`` is checked without reading, and the app then
    reads the stream itself. A chunked body has no declared length, so it is
    read here, up to the limit, and handed on as a buffer with its length.

    Raises:
        BodyRefused: 400 for a malformed ``Content-Length``, 413 above ``limit``.
    """
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if not chunked:
        _declared_length(environ, limit)
        return
    body = _read_to_end(environ["wsgi.input"], limit)
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    environ["CONTENT_LENGTH"] = str(len(body))


def _declared_length(environ: dict[str, Any], limit: int) -> Optional[int]:
    declared = environ.get("CONTENT_LENGTH")
    if type(declared) is not str or not declared.isdigit():
        # Not the usual plain decimal string: tidy it up before judging it.
        if not declared:
            return None
        declared = str(declared).strip()
        if not declared:
            return None
    if not declared.isdigit() or not declared.isascii() or len(declared) > _MAX_LENGTH_DIGITS:
        raise BodyRefused(400, "malformed Content-Length")
    length = int(declared)
    if length > limit:
        raise BodyRefused(413, "Content-Length above limit")
    return length


def read_request_body(environ: dict[str, Any], limit: int) -> Union[bytes, bytearray]:
    """Read the whole request body, refusing one longer than ``limit`` bytes.

    Under gunicorn, a body with a ``Content-Length`` comes straight from the
    socket (:mod:`mscomm_sync.wsgi.gunicorn`) as a ``bytearray``: one copy up
    to 2 MiB, a few more for larger bodies as the buffer grows.

    Args:
        environ: the WSGI environ; ``wsgi.input`` is consumed.
        limit: the most bytes accepted.

    Returns:
        The body: ``bytes``, or a ``bytearray`` from the gunicorn fast path.

    Raises:
        BodyRefused: 400 for a malformed or short ``Content-Length``, 413 for a
            body above ``limit``.
    """
    stream: IO[bytes] = environ["wsgi.input"]
    encoding = environ.get("HTTP_TRANSFER_ENCODING")
    chunked = encoding is not None and "chunked" in str(encoding).lower()
    if not chunked:
        length = _declared_length(environ, limit)
        if length is not None:
            if length:
                try:
                    body = read_gunicorn_body(stream, length)
                except EOFError:
                    raise BodyRefused(400, "body shorter than Content-Length") from None
                if body is not None:
                    return body
            return _read_exactly(stream, length)
    if chunked or environ.get("wsgi.input_terminated"):
        return _read_to_end(stream, limit)
    # No length and no terminated stream: PEP 3333 says there is no body,
    # and reading could block on a keep-alive connection.
    return b""


def _read_exactly(stream: IO[bytes], length: int) -> bytes:
    if length == 0:
        return b""
    # The declared length is already known to be within the limit, so ask for
    # all of it at once: servers that buffer the body (waitress, gunicorn's
    # sync workers) then hand it over in one copy.
    first = stream.read(length)
    if len(first) == length:  # the usual case: one read, no join
        return first
    if not first:
        raise BodyRefused(400, "body shorter than Content-Length")
    parts = [first]
    remaining = length - len(first)
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            raise BodyRefused(400, "body shorter than Content-Length")
        parts.append(chunk)
        remaining -= len(chunk)
    if remaining < 0:
        raise BodyRefused(400, "body longer than requested read")
    return b"".join(parts)


def _read_to_end(stream: IO[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise BodyRefused(413, "streamed body above limit")
        parts.append(chunk)
