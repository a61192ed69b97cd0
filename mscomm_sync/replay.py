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
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Protocol, Union, runtime_checkable

from .errors import ConfigurationError

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
    """Return the store used when none is given: SQLite at :func:`default_replay_path`."""
    return SqliteReplayStore(default_replay_path())


class SqliteReplayStore:
    """A replay store shared by every process and thread on one host.

    It keeps ids in an SQLite database in WAL mode. :meth:`add` is one
    ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement, so the
    check and the insert are one atomic write: of concurrent deliveries of
    one id, in any processes, exactly one sees ``True``. Expired ids are
    purged every 1024 inserts in each process.

    Connections are opened lazily, one per thread and process, so a store
    created before ``fork()`` (gunicorn ``--preload``) works in every child;
    a connection inherited from a parent is abandoned, never used or closed.

    Any database error fails closed: :meth:`add` returns ``False`` and logs.

    Args:
        path: the database file; created (mode 0600) if absent.
        clock: wall-clock time source, injectable for tests.
        timeout: seconds to wait for another process's write lock.

    Raises:
        ConfigurationError: the path is empty.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
    ) -> None:
        if not str(path):
            raise ConfigurationError("the replay database path is empty", variable=REPLAY_DB_ENV)
        self.path = Path(path)
        self._clock = clock
        self._timeout = timeout
        self._local = threading.local()
        self._abandoned: list[sqlite3.Connection] = []

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        try:
            conn = self._connection()
            cursor = conn.execute(
                "INSERT INTO seen (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE seen.expires_at <= ?",
                (key, expires_at, now),
            )
            fresh = cursor.rowcount == 1
            self._local.count = count = self._local.count + 1
            if count % _PURGE_EVERY == 0:
                conn.execute("DELETE FROM seen WHERE expires_at <= ?", (now,))
            return fresh
        except (sqlite3.Error, OSError, ConfigurationError) as exc:
            log.error("replay store %s failed, refusing: %s", self.path, exc)
            return False

    def __len__(self) -> int:
        """Return how many unexpired ids the database holds."""
        row = (
            self._connection()
            .execute("SELECT count(*) FROM seen WHERE expires_at > ?", (self._clock(),))
            .fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        """Close this thread's connection, if this process opened it."""
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn: Optional[sqlite3.Connection] = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:
            # Inherited across fork(): SQLite forbids using or closing it here.
            self._abandoned.append(conn)
        conn = self._open()
        local.conn, local.pid, local.count = conn, os.getpid(), 0
        return conn

    def _open(self) -> sqlite3.Connection:
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
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seen "
            "(key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
        )
        return conn

    def __repr__(self) -> str:
        return f"<SqliteReplayStore path={str(self.path)!r}>"
