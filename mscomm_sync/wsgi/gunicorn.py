"""gunicorn: read a request body of known length straight from its socket.

gunicorn's ``wsgi.input.read(n)`` gathers a large body through two
``BytesIO`` buffers and slices them, so a 1 MiB body is copied three or four
times, into freshly allocated memory each time. Measured in a gthread worker,
that is 0.4 ms at 1 MiB, and 1.3 ms with the ~730 page faults those
allocations bring once glibc has handed the memory back (it then does so
after every request, and plaintext requests served by the same worker pay the
faults too). See ``docs/performance.md``.

For a body with a ``Content-Length`` that nothing has read yet, this module
takes the bytes gunicorn has already buffered and then ``recv_into``-s the
rest straight from the socket into one ``bytearray`` that grows as the bytes
arrive (:class:`~mscomm_sync.buffers.BodyBuffer`), leaving gunicorn's
reader as if it had read the body itself: nothing left to read, and anything
past the body (a pipelined request) pushed back into its buffer.

It relies on gunicorn's reader objects (``Body.reader``, ``Body.buf``,
``LengthReader.unreader`` and ``.length``, ``SocketUnreader.sock`` and
``.buf``), which have the same shape from gunicorn 21.2, our lowest
supported release, to 27. Anything else, including other servers, chunked
bodies and a body already partly read, returns ``None`` and the caller reads
through ``wsgi.input`` as before.
"""

from __future__ import annotations

import io
from typing import Any, Optional

from ..buffers import BodyBuffer

__all__ = ["read_gunicorn_body"]

_BODY_MODULE = "gunicorn.http.body"


def read_gunicorn_body(stream: Any, length: int) -> Optional[bytearray]:
    """Return the ``length``-byte body behind gunicorn's ``stream``, or ``None`` to decline.

    Args:
        stream: the environ's ``wsgi.input``.
        length: the declared ``Content-Length``, already checked against the limit.

    Returns:
        The body, or ``None`` when ``stream`` is not an unread gunicorn body
        of exactly ``length`` bytes read from a socket; nothing has been
        consumed then.

    Raises:
        EOFError: the client closed the connection before sending
            ``length`` bytes. The connection cannot be reused afterwards.
        OSError: the socket failed (a timeout, a reset), as gunicorn's own
            read would raise it.
    """
    cls = stream.__class__
    if cls.__name__ != "Body" or cls.__module__ != _BODY_MODULE:
        return None
    try:
        reader = stream.reader
        unreader = reader.unreader
        ahead = unreader.buf
        sock = unreader.sock
        untouched = stream.buf.tell() == 0 and reader.length == length
    except AttributeError:  # another gunicorn, another reader: read the usual way
        return None
    if (
        not untouched
        or reader.__class__.__name__ != "LengthReader"
        or unreader.__class__.__name__ != "SocketUnreader"
        or not isinstance(ahead, io.BytesIO)
    ):
        return None
    held = ahead.getvalue()
    buffer = BodyBuffer(length, held)
    unreader.buf = io.BytesIO()
    unreader.buf.write(held[buffer.got :])  # what lies past the body: the next request
    reader.length = buffer.missing
    try:
        while buffer.missing:
            with buffer.space() as space:
                got = sock.recv_into(space)
            if not got:
                raise EOFError("the client closed the connection inside the body")
            buffer.filled(got)
            reader.length = buffer.missing
    except BaseException:
        # Where the next request starts is unknown now. gunicorn builds that
        # read this flag close the connection; the others drain what is left
        # of the body, which reader.length keeps exact.
        stream.failed = True
        raise
    return buffer.body  # never reused here, so exactly the body
