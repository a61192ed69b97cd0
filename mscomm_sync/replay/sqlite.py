"""SqliteReplayStore: a host-wide replay store in an SQLite database.

The default host-wide store is :class:`~mscomm_sync.replay.shm.ShmReplayStore`;
this one is for hosts where a shared memory map will not do, and for those
who prefer a file SQLite's tools can read. Like every replay store it holds
only opaque message ids and expiry times, never keys or plaintext.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional, Union

from ..errors import ConfigurationError
from ..telemetry.process import count_replay_error
from .files import open_private_file, store_path
from .store import DEFAULT_MAX_ENTRIES, log

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SqliteReplayStore", "enable_wal"]

_MIN_INTERVAL = 1024
# Between counts a connection inserts at most this share of the room it saw left.
_ROOM_SHARE = 64
# WAL pages between checkpoints (SQLite's default is 1000): each checkpoint
# copies every page changed since the last one, so fewer checkpoints copy
# fewer pages. The WAL grows to about this many 4 KiB pages (16 MiB).
_WAL_AUTOCHECKPOINT = 4096
_INSERT = (
    "INSERT INTO seen (key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE seen.expires_at <= ?"
)
_PURGE = "DELETE FROM seen WHERE expires_at <= ?"
_COUNT = "SELECT count(*) FROM seen"


class _Connection:
    """One thread's connection to the database in one process, and what it last counted there."""

    __slots__ = ("conn", "created", "execute", "full", "left", "pid", "recheck_at", "size")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.execute = conn.cursor().execute
        self.pid = os.getpid()
        self.left = 0  # fresh ids to insert before purging and counting again
        self.size = 0  # ids left at the last count
        self.full = False
        self.recheck_at = 0.0
        self.created: Optional[float] = None  # the database's not_before, once read


class _ThreadState(threading.local):
    """This thread's connection, once it has opened one."""

    current: Optional[_Connection] = None


class SqliteReplayStore:
    """A replay store shared by every process and thread on one host.

    It keeps ids in an SQLite database in WAL mode. :meth:`add` is one
    ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` statement, so the
    check and the insert are one atomic write: of concurrent deliveries of
    one id, in any processes, exactly one sees ``True``.

    The database is bounded: each connection purges expired ids and counts
    the rest when it opens, and again once it has inserted an *interval* of
    fresh ids: as many as it counted, but at most a sixty-fourth of the room
    then left under ``max_entries`` and at least ``min(1024, max_entries //
    16)``. While the count is at ``max_entries`` it refuses new ids (fails
    closed, re-checking at most once a second) rather than grow or forget ids
    that could still be replayed. Purging and counting scan the whole table;
    spreading them out this way keeps their share of an insert small at any
    size, while expired ids never outnumber the rest for long. The price is
    that the table may pass the bound by up to one interval per connection
    before every connection notices.

    Writes use ``PRAGMA synchronous=OFF`` unless ``durable=True``: an app
    crash loses nothing, but an OS crash or power loss may lose recent ids
    (replayable only within the window they were sealed for) or damage the
    file, after which the store refuses everything until the file is removed.
    On tmpfs, the default location, the file does not survive a reboot anyway.

    A new database remembers nothing, so it vouches only for messages sealed
    from the whole second after it was made (:attr:`not_before`, kept in the
    database): a message with an earlier timestamp may have been sealed before it.

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
            that must survive power loss undamaged; the last ids may still be
            taken back) instead of ``OFF``.

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
        timeout: float = 5.0,
        durable: bool = False,
    ) -> None:
        import sqlite3  # here, not at module import: `import mscomm_sync` stays light

        self.path = store_path(path, max_entries)
        self.max_entries = max_entries
        self._min_interval = max(1, min(_MIN_INTERVAL, max_entries // 16))
        self._clock = clock
        self._timeout = timeout
        self._synchronous = "NORMAL" if durable else "OFF"
        self._failures = (sqlite3.Error, OSError, ConfigurationError)
        self._local = _ThreadState()
        self._abandoned: list[sqlite3.Connection] = []

    def add(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        try:
            state = self._local.current  # _state(), inlined: this is the hot path
            if state is None or state.pid != os.getpid():
                state = self._connect()
            if state.full and not self._has_room(state, now):
                count_replay_error("sqlite", "full")
                log.error(
                    "replay store %s is full (%d ids), refusing", self.path, state.size,
                    extra={"mscomm.event": "replay store full", "mscomm.path": str(self.path),
                           "mscomm.reason": "full"},
                )  # fmt: skip
                return False
            if state.execute(_INSERT, (key, expires_at, now)).rowcount != 1:
                return False
            state.left -= 1
            if state.left <= 0:
                self._measure(state, now)
            return True
        except self._failures as exc:
            count_replay_error("sqlite", "failed")
            log.error(
                "replay store %s failed, refusing: %s", self.path, exc,
                extra={"mscomm.event": "replay store failed", "mscomm.path": str(self.path),
                       "mscomm.reason": type(exc).__name__},
            )  # fmt: skip
            return False

    @property
    def not_before(self) -> float:
        """The first whole second (Unix time) this database vouches for: the one after its creation.

        Opening the database may fail; then this is 0 and :meth:`add` refuses.
        """
        try:
            state = self._state()
            if state.created is None:
                row = state.execute("SELECT value FROM meta WHERE name = 'created'").fetchone()
                state.created = float(math.ceil(float(row[0])))
            return state.created
        except self._failures:
            return 0.0

    def __len__(self) -> int:
        """Return how many unexpired ids the database holds."""
        execute = self._state().execute
        row = execute("SELECT count(*) FROM seen WHERE expires_at > ?", (self._clock(),)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close this thread's connection, if this process opened it."""
        local = self._local
        if local.current is not None:
            if local.current.pid == os.getpid():
                local.current.conn.close()
            else:
                self._abandoned.append(local.current.conn)  # see _connect
        local.current = None

    def _has_room(self, state: _Connection, now: float) -> bool:
        # While full, purge and recount at most once a second: refusals stay cheap.
        if now >= state.recheck_at:
            self._measure(state, now)
            state.recheck_at = now + 1.0
        return not state.full

    def _measure(self, state: _Connection, now: float) -> None:
        execute = state.execute
        execute(_PURGE, (now,))
        size = state.size = int(execute(_COUNT).fetchone()[0])
        state.full = size >= self.max_entries
        state.left = self._interval(size)

    def _interval(self, size: int) -> int:
        """Return how many fresh ids to insert before purging and counting again."""
        room = self.max_entries - size
        return max(self._min_interval, min(size, room // _ROOM_SHARE))

    def _state(self) -> _Connection:
        state = self._local.current
        if state is None or state.pid != os.getpid():
            state = self._connect()
        return state

    def _connect(self) -> _Connection:
        local = self._local
        if local.current is not None:
            # Inherited across fork(): SQLite forbids using or closing it here.
            self._abandoned.append(local.current.conn)
            local.current = None
        state = _Connection(self._open())
        self._measure(state, self._clock())
        local.current = state
        return state

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        os.close(open_private_file(self.path))
        conn = sqlite3.connect(
            str(self.path), timeout=self._timeout, isolation_level=None, check_same_thread=True
        )
        enable_wal(conn, self._timeout)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS seen "
            "(key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
        )
        # When the database began to remember (a database made before this
        # was recorded gets the time of its first open since).
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (self._clock(),))
        return conn

    def __repr__(self) -> str:
        return f"<SqliteReplayStore path={str(self.path)!r} max={self.max_entries}>"


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode, waiting up to ``timeout`` seconds for other writers.

    SQLite answers a journal-mode change it cannot make at once with "database
    is locked" without waiting (its busy handler is not used for it), which
    is what connections racing to open one new database meet: so the mode is
    read first, and set in a bounded retry only when it is not WAL yet.
    """
    import sqlite3

    give_up = time.monotonic() + timeout
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= give_up:
                raise
            time.sleep(0.01)
