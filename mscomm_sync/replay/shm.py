"""ShmReplayStore: the host-wide replay store, a hash table in a shared memory map.

Every process of the host's user maps one fixed-size file (by default on
tmpfs) and an insert is a few operations on that memory under a file lock.

File layout (little-endian)::

    header, 4096 bytes: magic, format version, slots per bucket, bucket count,
                        a random 16-byte hashing key made with the file, and the
                        wall-clock time the table was made (float64; 0 in
                        tables made before it was recorded)
    bucket, 192 bytes:  8 digests of 16 bytes, then their 8 expiry times (float64)

An id is stored as its keyed BLAKE2b digest (keyed, so that a peer holding a
service key cannot aim ids at chosen buckets) in the freer of two candidate
buckets, picked by the digest's two halves. A slot is free once its expiry
has passed, so nothing is ever purged. ``max_entries`` ids fill the table
half way, where two choices make an overflowing bucket vanishingly rare; an
id whose two buckets are both full is refused (fails closed).

Crash safety: a slot is written digest first, expiry last (the commit),
under the lock. A process killed mid-write leaves at worst a slot that still
looks free, and the kernel drops its file lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import stat
import struct
import threading
import time
from bisect import bisect_right
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from ..errors import ConfigurationError
from ..forking import reset_after_fork
from ..telemetry.process import count_replay_error
from .files import open_private_file, store_path
from .store import DEFAULT_MAX_ENTRIES, REPLAY_DB_ENV, log

if TYPE_CHECKING:
    import mmap

__all__ = ["ShmReplayStore"]

_MAGIC = b"mscomm-replaytbl"
_VERSION = 1
_HEADER = struct.Struct("<16sIIQ16s")  # magic, version, slots, buckets, hashing key
_CREATED = struct.Struct("<d")  # after the header: when the table was made
_HEADER_SIZE = 4096
_SLOTS = 8
_DIGEST_SIZE = 16
_DIGESTS = _SLOTS * _DIGEST_SIZE  # a bucket's digests, then its expiries
_BUCKET = _DIGESTS + _SLOTS * 8
_IDS_PER_BUCKET = _SLOTS // 2  # max_entries fills the table half way
_SQLITE_MAGIC = b"SQLite format 3\x00"
_EXPIRIES = struct.Struct(f"<{_SLOTS}d").unpack_from
_EXPIRY = struct.Struct("<d").pack_into
_HALVES = struct.Struct("<QQ").unpack
# ImportError: a platform without fcntl or mmap (default_replay_store() avoids it there).
_FAILURES = (OSError, ValueError, struct.error, ImportError)
_REPORT_INTERVAL = 5.0  # seconds between two error lines of one store in one process
_LOCK_TIMEOUT = 5.0  # seconds to wait for another process's file lock


class ShmReplayStore:
    """A replay store shared by every process and thread on one host, in shared memory.

    :meth:`add` looks the id up and records it in one step under a thread lock
    and an exclusive ``flock`` on the file, so of concurrent deliveries of one
    id, in any processes, exactly one sees ``True``.

    The file is created on first use (mode 0600; a symlink in its place, or a
    file of another user or writable by others, is refused) with 48 bytes per
    entry of ``max_entries`` (48 MB for the default million), allocated at
    once so that a full tmpfs fails here, not with SIGBUS in a worker later.
    An existing table keeps its size (logged at INFO). Up to ``max_entries``
    ids, an id finding both its buckets full is vanishingly unlikely;
    refusals begin around 1.4 times that.

    Each process maps the file lazily, so a store created before ``fork()``
    (gunicorn ``--preload``) works in every child; a mapping inherited from a
    parent is left alone, never used or closed.

    A new table remembers nothing, so it vouches only for messages sealed
    from the whole second after it was made (:attr:`not_before`, kept in the file): a
    reboot that clears tmpfs, or a new container, costs at most one retry
    of a message sealed before it, never a replay.

    Any error fails closed: :meth:`add` returns ``False`` and logs to
    ``mscomm_sync.replay`` (at most one line per 5 s per process) with the
    file's path, never an id.

    Args:
        path: the table's file; created if absent.
        max_entries: how many unexpired ids the table must hold.
        clock: wall-clock time source, injectable for tests.

    Raises:
        ConfigurationError: the path is empty.
        ConfigurationError: ``max_entries`` is below 1.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = store_path(path, max_entries)
        self.max_entries = max_entries
        self._buckets = -(-max_entries // _IDS_PER_BUCKET)
        self._clock = clock
        self._table: Optional[_Table] = None
        self._abandoned: list[_Table] = []  # inherited across fork(); see _attach
        self._report = _Throttle()
        reset_after_fork(self)

    def add(self, key: str, expires_at: float) -> bool:
        table = self._table
        try:
            if table is None or table.pid != os.getpid():
                table = self._attach()
            hasher = table.hasher.copy()
            hasher.update(key.encode("utf-8", "surrogatepass"))
            digest = hasher.digest()
            first, second = _HALVES(digest)
            one = _HEADER_SIZE + first % table.buckets * _BUCKET
            two = _HEADER_SIZE + second % table.buckets * _BUCKET
            now = self._clock()
            with table.lock:
                table.lock_file()
                try:
                    fresh = _insert(table.mm, digest, one, two, now, expires_at)
                finally:
                    table.unlock_file()
        except _FAILURES as exc:
            count_replay_error("shm", "failed")
            self._report.error(
                "replay store %s failed, refusing: %s", self.path, exc,
                extra={"mscomm.event": "replay store failed", "mscomm.path": str(self.path),
                       "mscomm.reason": type(exc).__name__},
            )  # fmt: skip
            return False
        if fresh is None:
            count_replay_error("shm", "full")
            self._report.error(
                "replay store %s is full, refusing new ids", self.path,
                extra={"mscomm.event": "replay store full", "mscomm.path": str(self.path),
                       "mscomm.reason": "full"},
            )  # fmt: skip
            return False
        return fresh

    @property
    def not_before(self) -> float:
        """The first whole second (Unix time) this table can vouch for: the one after it was made.

        Mapping the table may fail; then this is 0 and :meth:`add` refuses.
        """
        table = self._table
        try:
            if table is None or table.pid != os.getpid():
                table = self._attach()
        except _FAILURES:
            return 0.0
        return table.not_before

    def __len__(self) -> int:
        """Return about how many unexpired ids the table holds.

        It scans the whole table (about a third of a second for the default
        size) without the file lock, so it never stalls the host's adds; the
        count may be off by the adds that ran meanwhile.

        Raises:
            ConfigurationError: the file is not a usable table.
            OSError: it cannot be opened or mapped.
        """
        table = self._table
        if table is None or table.pid != os.getpid():
            table = self._attach()
        now = float(self._clock())
        end = _HEADER_SIZE + table.buckets * _BUCKET
        return sum(
            sum(map(now.__lt__, _EXPIRIES(table.mm, offset)))
            for offset in range(_HEADER_SIZE + _DIGESTS, end, _BUCKET)
        )

    def close(self) -> None:
        """Unmap the table in this process; the next :meth:`add` maps it again.

        An :meth:`add` in another thread that already picked up the table
        refuses (``False``, logged) instead.
        """
        table, self._table = self._table, None
        if table is not None:
            if table.pid == os.getpid():
                table.close()
            else:
                self._abandoned.append(table)

    def _reset_after_fork(self) -> None:
        # In the child, right after fork(): the inherited file shares its flock
        # with the parent's, so if a parent thread held it, the child's copy
        # would keep it held after the parent died. Close the child's copies
        # (the parent's stay open); the next add() maps the table afresh.
        table, self._table = self._table, None
        for inherited in (table, *self._abandoned):
            if inherited is not None:
                inherited.forget()
        self._abandoned.clear()

    def _attach(self) -> _Table:
        """Map the table in this process (once, whichever thread gets here first)."""
        pid = os.getpid()
        stale = self._table
        if stale is not None and stale.pid != pid:
            # Inherited across fork(): its flock is shared with the parent's
            # open file, so it cannot exclude the parent. Keep it, unused.
            self._abandoned.append(stale)
            self._table = None
        table = _open_table(self.path, self._buckets, pid, self._clock())
        current = self._table
        if current is not None and current.pid == pid:  # another thread was quicker
            table.close()
            return current
        self._table = table
        return table

    def __repr__(self) -> str:
        return f"<ShmReplayStore path={str(self.path)!r} max={self.max_entries}>"


def _insert(
    mm: mmap.mmap, digest: bytes, one: int, two: int, now: float, expires_at: float
) -> Optional[bool]:
    """Record ``digest`` in bucket ``one`` or ``two`` unless it is there, unexpired.

    A slot is taken while its expiry is in the future, free otherwise (a NaN
    expiry, which only a damaged file holds, counts as free).

    Returns:
        ``True`` if recorded, ``False`` if already present, ``None`` if both
        buckets are full. The caller holds the locks.
    """
    ones = _EXPIRIES(mm, one + _DIGESTS)
    if mm.find(digest, one, one + _DIGESTS) >= 0 and _holds(mm, digest, one, ones, now):
        return False
    twos = None
    if two != one:
        twos = _EXPIRIES(mm, two + _DIGESTS)
        if mm.find(digest, two, two + _DIGESTS) >= 0 and _holds(mm, digest, two, twos, now):
            return False
    if not expires_at > now:
        return True  # expired already: there is nothing to remember
    base, expiries, order = one, ones, sorted(ones)
    free = bisect_right(order, now)
    if twos is not None:
        order_two = sorted(twos)
        free_two = bisect_right(order_two, now)
        if free_two > free:
            base, expiries, order, free = two, twos, order_two, free_two
    if not free:
        return None
    slot = expiries.index(order[0])  # the earliest expiry, free since one is
    if expiries[slot] > now:  # sorted() misleads only with a NaN there
        slot = next((i for i, e in enumerate(expiries) if not e > now), -1)
        if slot < 0:
            return None
    start = base + slot * _DIGEST_SIZE
    mm[start : start + _DIGEST_SIZE] = digest
    _EXPIRY(mm, base + _DIGESTS + slot * 8, expires_at)  # last: this commits the slot
    return True


def _holds(
    mm: mmap.mmap, digest: bytes, base: int, expiries: tuple[float, ...], now: float
) -> bool:
    """Return whether the bucket at ``base`` holds ``digest`` in an unexpired slot."""
    end = base + _DIGESTS
    found = mm.find(digest, base, end)
    while found >= 0:
        offset = found - base
        if offset % _DIGEST_SIZE == 0 and expiries[offset // _DIGEST_SIZE] > now:
            return True
        found = mm.find(digest, found + 1, end)  # misaligned, or an expired copy
    return False


class _Table:
    """One process's open file and mapping of the table, and its locks."""

    __slots__ = (
        "buckets",
        "fd",
        "hasher",
        "lock",
        "lock_file",
        "mm",
        "not_before",
        "pid",
        "unlock_file",
    )

    def __init__(
        self, pid: int, fd: int, mm: mmap.mmap, buckets: int, key: bytes, created: float
    ) -> None:
        import fcntl

        self.not_before = float(math.ceil(created))
        self.pid = pid
        self.mm = mm
        self.buckets = buckets
        self.hasher = hashlib.blake2b(digest_size=_DIGEST_SIZE, key=key)
        self.lock = threading.Lock()  # threads share the open file, so its flock
        # excludes processes only. Both are looked up under self.lock, see close().
        self.lock_file: Callable[[], None] = partial(_lock, fd)
        self.unlock_file: Callable[[], None] = partial(fcntl.flock, fd, fcntl.LOCK_UN)
        self.fd = fd  # last: a table without it was never whole (see __del__)

    def close(self) -> None:
        """Unmap and close, once no thread is inside the table; later uses raise ValueError."""
        with self.lock:
            if self.fd >= 0:
                # Never flock the closed descriptor's number: it may be reused.
                self.lock_file = self.unlock_file = _closed
                self.mm.close()
                os.close(self.fd)
                self.fd = -1

    def forget(self) -> None:
        """Close this process's copies of an inherited file and mapping, without locking.

        Only for a forked child, where a thread that held :attr:`lock` may be
        gone; closing the child's copies leaves the parent's untouched.
        """
        self.lock_file = self.unlock_file = _closed
        fd, self.fd = self.fd, -1
        with contextlib.suppress(BufferError, ValueError):
            self.mm.close()
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self, _getpid: Callable[[], int] = os.getpid) -> None:
        # A signal inside __init__ can leave a table without ``fd``: nothing to close.
        if getattr(self, "fd", -1) >= 0 and self.pid == _getpid():  # dropped unclosed, here
            self.close()


def _lock(fd: int) -> None:
    """Take the file lock, waiting at most :data:`_LOCK_TIMEOUT` seconds.

    Another process holds it for a few microseconds per insert, so a few
    yields usually get it; then the waits grow to 10 ms. A holder that is
    stopped (SIGSTOP, a debugger) makes this raise after the timeout, and the
    store refuses, rather than hang every worker on the host.

    Raises:
        TimeoutError: the lock was not free within the timeout.
    """
    import fcntl  # already imported by _open_table: a dictionary lookup

    flock, exclusive = fcntl.flock, fcntl.LOCK_EX | fcntl.LOCK_NB
    try:
        flock(fd, exclusive)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + _LOCK_TIMEOUT
    delay = 0.0
    while True:
        time.sleep(delay)
        try:
            flock(fd, exclusive)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError("the replay table stayed locked by another process") from None
        delay = min(delay * 2 or 0.00005, 0.01)


def _closed() -> None:
    raise ValueError("the replay table was closed")


def _open_table(path: Path, buckets: int, pid: int, now: float) -> _Table:
    """Open, create or check, and map the table file.

    Raises:
        ConfigurationError: the file is not a table this version can use.
        OSError: it cannot be opened, sized or mapped.
    """
    import fcntl
    import mmap

    fd = open_private_file(path)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode) or mode & 0o022:
            raise ConfigurationError(
                f"replay store file {path} is not a regular file writable by its owner only",
                variable=REPLAY_DB_ENV,
                reason="not private",
            )
        _lock(fd)
        try:
            buckets, key, created = _prepare(fd, path, buckets, now)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        # MAP_POPULATE maps every page now (about 5 ms for 48 MB) rather than
        # fault them in one by one (about 1 us each) on the first adds.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(fd, _HEADER_SIZE + buckets * _BUCKET, flags=flags)
    except BaseException:
        os.close(fd)
        raise
    return _Table(pid, fd, mm, buckets, key, created)


def _prepare(fd: int, path: Path, buckets: int, now: float) -> tuple[int, bytes, float]:
    """Create the table in an empty file, or check the one there.

    Returns its bucket count, hashing key and creation time (``now`` for a
    table made here).

    The caller holds the file lock.

    Raises:
        ConfigurationError: the file holds something else.
        OSError: it cannot be read, sized or written.
    """
    size = os.fstat(fd).st_size
    head = os.pread(fd, _HEADER.size, 0)
    if size == 0 or (_table_sized(size) and not os.pread(fd, _HEADER_SIZE, 0).strip(b"\x00")):
        # Empty, or a creator died before writing the header's magic (it sizes
        # the file first): nobody used it. Any other file is left alone.
        key = os.urandom(_DIGEST_SIZE)
        os.ftruncate(fd, 0)
        _reserve(fd, _HEADER_SIZE + buckets * _BUCKET)
        os.pwrite(fd, _HEADER.pack(bytes(len(_MAGIC)), _VERSION, _SLOTS, buckets, key), 0)
        os.pwrite(fd, _CREATED.pack(now), _HEADER.size)
        os.pwrite(fd, _MAGIC, 0)  # last: the magic commits the header
        return buckets, key, now
    if head.startswith(_SQLITE_MAGIC):
        raise ConfigurationError(
            f"replay store file {path} is an SQLite database, not a replay table; "
            f"set {REPLAY_DB_ENV} to a new file, or pass SqliteReplayStore for it",
            variable=REPLAY_DB_ENV,
            reason="sqlite database",
        )
    if len(head) == _HEADER.size:
        magic, version, slots, found, key = _HEADER.unpack(head)
        if (
            (magic, version, slots) == (_MAGIC, _VERSION, _SLOTS)
            and found >= 1
            and key.strip(b"\x00")
            and size == _HEADER_SIZE + found * _BUCKET
        ):
            if found != buckets:
                log.info(
                    "replay store %s holds about %d ids, not %d: using the file's size",
                    path,
                    found * _IDS_PER_BUCKET,
                    buckets * _IDS_PER_BUCKET,
                    extra={"mscomm.event": "replay store size", "mscomm.path": str(path)},
                )
            (created,) = _CREATED.unpack(os.pread(fd, _CREATED.size, _HEADER.size))
            return found, key, created
    raise ConfigurationError(
        f"replay store file {path} is not a replay table of this version; "
        f"remove it or set {REPLAY_DB_ENV} to a new file",
        variable=REPLAY_DB_ENV,
        reason="bad header",
    )


def _table_sized(size: int) -> bool:
    """Return whether a file of ``size`` bytes has the size of some table."""
    return size > _HEADER_SIZE and (size - _HEADER_SIZE) % _BUCKET == 0


def _reserve(fd: int, size: int) -> None:
    """Size the file, allocating its pages now where the filesystem can.

    In a sparse file on a full tmpfs, the first touch of a missing page
    would kill a worker with SIGBUS; this turns that into an error now.
    """
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        os.ftruncate(fd, size)
        return
    try:
        allocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            os.ftruncate(fd, 0)
            raise
        os.ftruncate(fd, size)


class _Throttle:
    """Logs at most one error line per interval, counting the ones held back."""

    __slots__ = ("held", "next_at")

    def __init__(self) -> None:
        self.next_at = 0.0
        self.held = 0

    def error(self, message: str, *args: object, extra: Optional[dict[str, object]] = None) -> None:
        now = time.monotonic()
        if now < self.next_at:
            self.held += 1
            return
        if self.held:
            message += " (%d more since the last report)"
            args = (*args, self.held)
        log.error(message, *args, extra=extra)
        self.held = 0
        self.next_at = now + _REPORT_INTERVAL
