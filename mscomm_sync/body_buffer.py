"""A buffer for a body of known length that grows only as its bytes arrive.

Both sides read large sealed bodies straight from a socket into one
``bytearray`` (``recv_into``), which saves the copies and the page faults
of reading in pieces and joining them. But the length comes from a header
the peer chose: allocating all of it before a byte of body has arrived
would let a request of headers alone hold ``max_body_size`` of memory on
the server (and a server's ``Content-Length`` do the same to a client).
So the buffer starts at 2 MiB and 16 bytes (or the length, if smaller)
and, each time it is full, is replaced by one four times larger (never past
the length), into which what arrived so far is copied. Memory held is then
at most that first buffer or four times what the peer has actually sent,
whichever is larger (five times for the moment of a copy). Bodies that fit
the first buffer are copied once, from the socket; larger ones pay the
copies of growing, up to about four thirds of the body more. (gunicorn
itself lets one request's headers hold up to about 800 KiB: 100 fields of
8 KiB.)
Starting smaller was measured: with a 256 KiB or 1 MiB start, a sealed
1 MiB body (1 MiB and 16 bytes) grows once, and the extra allocation and
copy cost more than the one-copy read saves.
"""

from __future__ import annotations

__all__ = ["BodyBuffer"]

#: 2 MiB of plaintext and its 16-byte GCM tag, so a sealed 2 MiB body fits at once.
_FIRST = 2 * 1024 * 1024 + 16
_GROWTH = 4


class BodyBuffer:
    """Collects exactly ``length`` bytes, handed out as writable space to fill.

    Use :meth:`space` to get a view to read into, :meth:`filled` to say how
    many bytes went in, and :attr:`body` once :attr:`missing` is 0.

    Args:
        length: the body's declared length.
        first: the bytes to start with (what a reader had already buffered);
            at most ``length`` of them are taken.
    """

    __slots__ = ("body", "got", "length")

    def __init__(self, length: int, first: bytes = b"") -> None:
        self.length = length
        taken = min(len(first), length)
        self.body = bytearray(min(length, max(taken, _FIRST)))
        self.body[:taken] = first[:taken]
        self.got = taken

    @property
    def missing(self) -> int:
        """How many bytes are still to come."""
        return self.length - self.got

    def space(self) -> memoryview:
        """Return a writable view of the next free bytes, growing the buffer if it is full.

        The caller must release the view (``with``) before calling this again.
        """
        if self.got == len(self.body):
            bigger = bytearray(min(self.length, len(self.body) * _GROWTH))
            bigger[: self.got] = self.body
            self.body = bigger
        return memoryview(self.body)[self.got :]

    def filled(self, count: int) -> None:
        """Record that ``count`` more bytes were written into the last :meth:`space`."""
        self.got += count

    def __repr__(self) -> str:
        return f"<BodyBuffer {self.got}/{self.length} bytes>"
