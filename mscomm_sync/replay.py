"""Replay stores: remember message ids so a captured message opens only once.

Trust model: an attacker on the network can capture a sealed request and send
it again, as many times and to as many workers as they like. The envelope's
timestamp window limits *how long* a capture is useful; the replay store makes
it useful *zero* times more. Its one operation, :meth:`ReplayStore.add`, must be
atomic insert-if-absent: of many concurrent deliveries of one message id,
exactly one may see ``True``.

A store only ever holds opaque message ids and expiry times, never keys or
plaintext. :class:`SqliteReplayStore` keeps them in a file that every process
of the host's user shares; it is created readable and writable by that user
only, because anyone who can write it can erase the memory of a message.
"""

from __future__ import annotations

import heapq
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Union, runtime_checkable

from .errors import ConfigurationError

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "REPLAY_DB_ENV",
    "MemoryReplayStore",
    "ReplayStore",
    "SqliteReplayStore",
    "default_replay_path",
    "default_replay_store",
]

DEFAULT_MAX_ENTRIES = 1_000_000
#: The environment variable that names the host-wide replay database file.
REPLAY_DB_ENV = "MSCOMM_REPLAY_DB"
_PURGE_EVERY = 1024
_INSERT = (
    "INSERT INTO seen (key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE seen.expires_at <= ?"
)

log = logging.getLogger("mscomm_sync.replay")


@runtime_checkable
class ReplayStore(Protocol):
    """What the envelope needs from a replay store.

    Implementations must be safe to call from many threads at once.
    """

    def add(self, key: str, expires_at: float) -> bool:
        """Record ``key`` until the wall-clock time ``expires_at``.

        Returns:
            ``True`` if the key was not present (the message is fresh),
            ``False`` if it was already recorded and has not expired, or if
            the store cannot take more entries (it fails closed).
        """
        ...  # pragma: no cover


class MemoryReplayStore:
    """A replay store for one process, bounded in memory.

    It protects a single-process app. Under gunicorn or any server with more
    than one worker process, use a store shared by the workers instead, or a
    request replayed to another worker will be accepted there.

    When the store holds ``max_entries`` unexpired ids it refuses new ones
    (fails closed) rather than forgetting ids that could still be replayed.

    Args:
        max_entries: the most ids held at once.
        clock: wall-clock time source, injectable for tests.
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        with self._lock:
            self._evict(now)
            current = self._expiry.get(key)
            if current is not None and current > now:
                return False
            if len(self._expiry) >= self.max_entries:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def _evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._expiry)

    def __repr__(self) -> str:
        return f"<MemoryReplayStore entries={len(self._expiry)} max={self.max_entries}>"


def default_replay_path() -> Path:
    """Return where the host-wide replay database lives by default.

    ``$MSCOMM_REPLAY_DB`` when set; otherwise a per-user file in ``/dev/shm``
    (tmpfs, so an insert costs microseconds, not a disk sync) when that
    directory exists, else in the temporary directory.
    """
    configured = os.environ.get(REPLAY_DB_ENV)
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs is the point; the file is per user, mode 0600
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return base / f"mscomm-replay-{uid}.sqlite3"


def default_replay_store() -> SqliteReplayStore:
    """Return the store used when none is given: SQLite at :func:`default_replay_path`.

    It holds at most :data:`DEFAULT_MAX_ENTRIES` ids (about 100 MB of RAM on tmpfs).
    """
    return SqliteReplayStore(default_replay_path())


class _ThreadState(threading.local):
    """One thread's connection to the database, and what it last counted there."""

    conn: Optional[sqlite3.Connection] = None
    cursor: sqlite3.Cursor
    pid = 0
    fresh = 0  # ids inserted since the last count
    size = 0  # unexpired ids at the last count
    full = False
    recheck_at = 0.0


class SqliteReplayStore:
    """A replay store shared by every process and thread on one host.

    It keeps ids in an SQLite database in WAL mode. :meth:`add` is one
    ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement, so the
    check and the insert are one atomic write: of concurrent deliveries of
    one id, in any processes, exactly one sees ``True``.

    The database is bounded: each connection purges expired ids and counts
    the rest when it opens and then every ``min(1024, max_entries // 16)``
    fresh ids, and while the count is at ``max_entries`` it refuses new ids
    (fails closed, re-checking at most once a second) rather than grow or
    forget ids that could still be replayed. Counting only now and then keeps
    an insert cheap; the price is that the table may pass the bound by up to
    that interval per connection before every connection notices.

    Writes use ``PRAGMA synchronous=OFF`` unless ``durable=True``: an app
    crash loses nothing, but an OS crash or power loss may lose recent ids
    (replayable only within the window they were sealed for) or damage the
    file, after which the store refuses everything until the file is removed.
    On tmpfs, the default location, the file does not survive a reboot anyway.

    Connections are opened lazily, one per thread and process, so a store
    created before ``fork()`` (gunicorn ``--preload``) works in every child;
    a connection inherited from a parent is abandoned, never used or closed.

    Any database error fails closed: :meth:`add` returns ``False`` and logs.

    Args:
        path: the database file; created (mode 0600) if absent.
        max_entries: the most unexpired ids kept (approximately; see above).
        clock: wall-clock time source, injectable for tests.
        timeout: seconds to wait for another process's write lock.
        durable: keep SQLite's ``synchronous=NORMAL`` (for a disk-backed file
            that must survive power loss) instead of ``OFF``.

    Raises:
        ConfigurationError: the path is empty.
        ValueError: ``max_entries`` is below 1.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        durable: bool = False,
    ) -> None:
        import sqlite3  # here, not at module import: `import mscomm_sync` stays light

        if not str(path):
            raise ConfigurationError("the replay database path is empty", variable=REPLAY_DB_ENV)
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = Path(path)
        self.max_entries = max_entries
        self._check_every = max(1, min(_PURGE_EVERY, max_entries // 16))
        self._clock = clock
        self._timeout = timeout
        self._synchronous = "NORMAL" if durable else "OFF"
        self._failures = (sqlite3.Error, OSError, ConfigurationError)
        self._local = _ThreadState()
        self._abandoned: list[sqlite3.Connection] = []

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        try:
            local = self._thread_state()
            if local.full and not self._has_room(local, now):
                log.error("replay store %s is full (%d ids), refusing", self.path, local.size)
                return False
            fresh = local.cursor.execute(_INSERT, (key, expires_at, now)).rowcount == 1
            if fresh:
                local.fresh += 1
                if local.fresh >= self._check_every:
                    self._measure(local, now)
            return fresh
        except self._failures as exc:
            log.error("replay store %s failed, refusing: %s", self.path, exc)
            return False

    def __len__(self) -> int:
        """Return how many unexpired ids the database holds."""
        cursor = self._thread_state().cursor
        row = cursor.execute(
            "SELECT count(*) FROM seen WHERE expires_at > ?", (self._clock(),)
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close this thread's connection, if this process opened it."""
        local = self._local
        if local.conn is not None and local.pid == os.getpid():
            local.conn.close()
        local.conn = None

    def _has_room(self, local: _ThreadState, now: float) -> bool:
        # While full, purge and recount at most once a second: refusals stay cheap.
        if now >= local.recheck_at:
            self._measure(local, now)
            local.recheck_at = now + 1.0
        return not local.full

    def _measure(self, local: _ThreadState, now: float) -> None:
        cursor = local.cursor
        cursor.execute("DELETE FROM seen WHERE expires_at <= ?", (now,))
        local.size = int(cursor.execute("SELECT count(*) FROM seen").fetchone()[0])
        local.full = local.size >= self.max_entries
        local.fresh = 0

    def _thread_state(self) -> _ThreadState:
        local = self._local
        if local.conn is not None and local.pid == os.getpid():
            return local
        if local.conn is not None:
            # Inherited across fork(): SQLite forbids using or closing it here.
            self._abandoned.append(local.conn)
        conn = local.conn = self._open()
        local.pid, local.cursor, local.recheck_at = os.getpid(), conn.cursor(), 0.0
        self._measure(local, self._clock())
        return local

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        # O_NOFOLLOW: in a shared directory such as /dev/shm, another user could
        # plant a symlink under our file's name.
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if hasattr(os, "getuid") and os.fstat(fd).st_uid != os.getuid():
                raise ConfigurationError(
                    f"replay database {self.path} belongs to another user; "
                    f"set {REPLAY_DB_ENV} to a file of your own",
                    variable=REPLAY_DB_ENV,
                    reason="foreign owner",
                )
        finally:
            os.close(fd)
        conn = sqlite3.connect(
            str(self.path), timeout=self._timeout, isolation_level=None, check_same_thread=True
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seen "
            "(key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
        )
        return conn

    def __repr__(self) -> str:
        return f"<SqliteReplayStore path={str(self.path)!r} max={self.max_entries}>"
