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

A client reading many large answers can also hand the buffer a used one
from a :class:`BufferPool`, so that its reads land in memory the process
already has: see the pool for why that matters.
"""

from __future__ import annotations

import threading
from typing import Optional, Union

__all__ = ["BodyBuffer", "BufferPool"]

#: 2 MiB of plaintext and its 16-byte GCM tag, so a sealed 2 MiB body fits at once.
_FIRST = 2 * 1024 * 1024 + 16
_GROWTH = 4


class BodyBuffer:
    """Collects exactly ``length`` bytes, handed out as writable space to fill.

    Use :meth:`space` to get a view to read into, :meth:`filled` to say how
    many bytes went in, and :attr:`body` once :attr:`missing` is 0 (or
    :meth:`view` when the buffer was reused and may be longer than the body).

    Args:
        length: the body's declared length.
        first: the bytes to start with (what a reader had already buffered);
            at most ``length`` of them are taken.
        reuse: a used buffer of at least ``length`` bytes to read into
            instead of allocating one (its old bytes are overwritten; only the
            first ``length`` are ever handed out).
    """

    __slots__ = ("body", "got", "length")

    def __init__(
        self, length: int, first: bytes = b"", *, reuse: Optional[bytearray] = None
    ) -> None:
        self.length = length
        taken = min(len(first), length)
        if reuse is not None and len(reuse) >= length:
            self.body = reuse
        else:
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
        # Bounded by the length: a reused buffer may be longer than the body.
        return memoryview(self.body)[self.got : self.length]

    def filled(self, count: int) -> None:
        """Record that ``count`` more bytes were written into the last :meth:`space`."""
        self.got += count

    def view(self) -> memoryview:
        """Return a view of the body, to give back to a :class:`BufferPool` when done.

        Releasing the view (``BufferPool.give`` does) makes every reference
        to it unreadable, so nothing that kept it (a traceback's locals, say)
        can later read the next body written into the buffer.
        """
        return memoryview(self.body)[: self.length]

    def __repr__(self) -> str:
        return f"<BodyBuffer {self.got}/{self.length} bytes>"


class BufferPool:
    """Keeps a few used read buffers, so that large reads land in memory the process has.

    Why: glibc gives freed memory at the top of its heap back to the kernel
    once more than twice its ``mmap`` threshold (about 2 MiB once a 1 MiB
    buffer has come and gone) is free there, and every page of a buffer
    that comes back fresh costs a page fault. A client call of 1 MiB each
    way held three fresh megabytes (the sealed request, the sealed answer
    and the opened answer), so glibc returned them after every call and
    each call paid about 480 faults. Reading sealed answers into a kept
    buffer, and letting the sealed request go once it is sent, leaves one
    fresh megabyte per call, and no faults (see ``docs/performance.md``).

    The buffers hold ciphertext only: callers open from them into fresh
    memory. At most ``keep`` buffers of at most ``largest`` bytes are kept,
    so a pool holds at most ``keep * largest`` bytes. Safe to share between
    threads: a buffer is handed to one taker at a time.

    Args:
        keep: how many buffers to keep.
        largest: the largest buffer kept, in bytes.
    """

    def __init__(self, keep: int = 2, largest: int = _FIRST) -> None:
        self.keep = keep
        self.largest = largest
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, length: int) -> Optional[bytearray]:
        """Return a kept buffer of at least ``length`` bytes (the smallest such), or ``None``."""
        with self._lock:
            # By position, never list.remove(): bytearrays compare by content.
            fitting = [i for i, b in enumerate(self._free) if len(b) >= length]
            if not fitting:
                return None
            return self._free.pop(min(fitting, key=lambda i: len(self._free[i])))

    def give(self, data: Union[bytearray, memoryview]) -> None:
        """Offer back a buffer (or a view of one from :meth:`BodyBuffer.view`) for reuse.

        Nothing may use ``data`` afterwards; a view is released here. A
        buffer larger than ``largest`` is dropped, and when the pool is full
        the smallest buffer is dropped to keep the larger one.
        """
        if isinstance(data, memoryview):
            buffer = data.obj
            data.release()
        else:
            buffer = data
        if not isinstance(buffer, bytearray) or len(buffer) > self.largest:
            return
        with self._lock:
            if any(b is buffer for b in self._free):
                return
            self._free.append(buffer)
            if len(self._free) > self.keep:
                self._free.pop(min(range(len(self._free)), key=lambda i: len(self._free[i])))

    def clear(self) -> None:
        """Drop every kept buffer."""
        with self._lock:
            self._free.clear()

    def __len__(self) -> int:
        return len(self._free)

    def __repr__(self) -> str:
        return f"<BufferPool {len(self._free)}/{self.keep} kept, at most {self.largest} bytes each>"
