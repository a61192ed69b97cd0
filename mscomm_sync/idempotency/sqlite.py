"""SqliteIdempotencyStore: the keys of every process on a host, in an SQLite database."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

from ..errors import ConfigurationError, IdempotencyStoreError
from ..replay.files import open_private_file
from ..replay.sqlite import enable_wal
from .store import (
    DEFAULT_MAX_ENTRIES,
    IDEMPOTENCY_DB_ENV,
    Claim,
    Outcome,
    StoredAnswer,
    log,
)

if TYPE_CHECKING:
    import sqlite3

__all__ = ["SqliteIdempotencyStore"]

#: The most bytes of kept answers unless told otherwise.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

_SCHEMA = (
    # owner: the claim's token while running, NULL once answered; pid: the
    # claimant's process, to give up a dead one's claim at once; until: the
    # lease's end while running, the retention's end once answered.
    "CREATE TABLE IF NOT EXISTS claims ("
    " scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, owner TEXT, pid INTEGER,"
    " until REAL NOT NULL, answer BLOB, size INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS claims_until ON claims (until)",
)
_GET = "SELECT fingerprint, owner, pid, until, answer FROM claims WHERE scope = ?"
_PUT = (
    "INSERT OR REPLACE INTO claims (scope, fingerprint, owner, pid, until) VALUES (?, ?, ?, ?, ?)"
)
_COMPLETE = (
    "UPDATE claims SET owner = NULL, pid = NULL, until = ?, answer = ?, size = ?"
    " WHERE scope = ? AND owner = ?"
)
_RELEASE = "DELETE FROM claims WHERE scope = ? AND owner = ?"
_PURGE = "DELETE FROM claims WHERE until <= ?"
_COUNT = "SELECT count(*), total(size) FROM claims"
# The oldest answered keys, to forget when the store is full.
_OLDEST = "SELECT scope, size FROM claims WHERE owner IS NULL ORDER BY until LIMIT ?"


class _ThreadState(threading.local):
    conn: Optional[sqlite3.Connection] = None
    pid: int = 0


class SqliteIdempotencyStore:
    """An idempotency store shared by every process and thread on one host.

    A claim is one ``BEGIN IMMEDIATE`` transaction: read the key's row and
    write it, under SQLite's write lock, so of concurrent requests with one
    key, in any processes, exactly one starts. A running claim whose process
    has died (the store can tell: it is on the same host) or whose lease has
    run out is given up to the next request.

    It is bounded by ``max_entries`` keys and ``max_bytes`` of kept answers:
    past either, answered keys are forgotten oldest first (logged at WARNING
    when their retention had not ended); when only running keys are left it
    refuses new ones (:class:`IdempotencyStoreError`), so the middleware
    runs nothing it could not promise to run once.

    Writes survive a crash of the service (``synchronous=NORMAL`` in WAL
    mode): a kept answer outlives the service and a clean reboot of the host;
    a power loss or a crash of the host may take back the last transactions.
    With ``durable=True`` every commit is flushed to the disk first
    (``synchronous=FULL``: an ``fsync`` per claim and per answer), and what
    was committed survives those too.

    Connections are opened lazily, one per thread and process, so a store
    created before ``fork()`` works in every child.

    Args:
        path: the database file; created (mode 0600) if absent.
        max_entries: the most keys held.
        max_bytes: the most bytes of kept answers.
        clock: wall-clock time source, for tests.
        timeout: seconds to wait for another process's write lock.
        durable: flush every commit to the disk (``synchronous=FULL``), so
            that claims and answers survive a power loss.

    Raises:
        ConfigurationError: the path is empty, or a bound is below 1.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        durable: bool = False,
    ) -> None:
        if not os.fspath(path):
            raise ConfigurationError(
                "the idempotency store path is empty",
                variable=IDEMPOTENCY_DB_ENV,
                reason="empty path",
            )
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if value < 1:
                raise ConfigurationError(
                    f"{name} must be at least 1", variable=name, reason="invalid"
                )
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._timeout = timeout
        self.durable = durable
        self._local = _ThreadState()
        self._abandoned: list[sqlite3.Connection] = []

    # -- the store's operations ---------------------------------------------

    def claim(self, scope: str, fingerprint: str, *, lease: float) -> Claim:
        now = self._clock()
        with self._transaction() as execute:
            row = execute(_GET, (scope,)).fetchone()
            if row is not None:
                found, owner, pid, until, answer = row
                if until > now and not (owner is not None and _dead(pid)):
                    if found != fingerprint:
                        return Claim(Outcome.REUSED)
                    if owner is not None:
                        return Claim(Outcome.RUNNING, retry_after=min(1.0, until - now))
                    kept = None if answer is None else _decode(answer, self)
                    return Claim(Outcome.DONE, answer=kept)
                execute("DELETE FROM claims WHERE scope = ?", (scope,))
            self._make_room(execute, now, 0)
            token = os.urandom(8).hex()
            execute(_PUT, (scope, fingerprint, token, os.getpid(), now + lease))
            return Claim(Outcome.STARTED, token=token)

    def complete(
        self, scope: str, token: str, answer: Optional[StoredAnswer], *, retention: float
    ) -> None:
        data = None if answer is None else answer.encode()
        size = 0 if data is None else len(data)
        if size > self.max_bytes:
            data, size = None, 0
        with self._transaction() as execute:
            if size:
                self._make_room(execute, self._clock(), size)
            execute(_COMPLETE, (self._clock() + retention, data, size, scope, token))

    def release(self, scope: str, token: str) -> None:
        with self._transaction() as execute:
            execute(_RELEASE, (scope, token))

    def __len__(self) -> int:
        """Return how many keys the database holds (running or answered, unexpired)."""
        with self._transaction() as execute:
            row = execute("SELECT count(*) FROM claims WHERE until > ?", (self._clock(),))
            return int(row.fetchone()[0])

    def close(self) -> None:
        """Close this thread's connection, if this process opened it."""
        local = self._local
        if local.conn is not None and local.pid == os.getpid():
            local.conn.close()
        local.conn = None

    def __repr__(self) -> str:
        return f"<SqliteIdempotencyStore path={str(self.path)!r} max={self.max_entries}>"

    # -- inside -------------------------------------------------------------

    def _make_room(self, execute: Callable[..., sqlite3.Cursor], now: float, size: int) -> None:
        count, total = execute(_COUNT).fetchone()
        if count < self.max_entries and total + size <= self.max_bytes:
            return
        execute(_PURGE, (now,))
        count, total = execute(_COUNT).fetchone()
        forgot = 0
        while count >= self.max_entries or total + size > self.max_bytes:
            oldest = execute(_OLDEST, (64,)).fetchall()
            if not oldest:
                raise IdempotencyStoreError(
                    "idempotency store is full of running requests", store=repr(self), reason="full"
                )
            for scope, kept in oldest:
                execute("DELETE FROM claims WHERE scope = ?", (scope,))
                count, total, forgot = count - 1, total - kept, forgot + 1
                if count < self.max_entries and total + size <= self.max_bytes:
                    break
        if forgot:
            log.warning(
                "idempotency store %s is full: forgot %d answers before their retention ended",
                self.path, forgot,
                extra={"mscomm.store": str(self.path), "mscomm.count": forgot},
            )  # fmt: skip

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if local.conn is not None and local.pid == os.getpid():
            return local.conn
        if local.conn is not None:
            # Inherited across fork(): SQLite forbids using or closing it here.
            self._abandoned.append(local.conn)
        import sqlite3  # here, not at module import: `import mscomm_sync` stays light

        os.close(open_private_file(self.path))
        conn = sqlite3.connect(
            str(self.path), timeout=self._timeout, isolation_level=None, check_same_thread=True
        )
        enable_wal(conn, self._timeout)
        conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
        for statement in _SCHEMA:
            conn.execute(statement)
        local.conn, local.pid = conn, os.getpid()
        return conn


class _Transaction:
    """``with`` one ``BEGIN IMMEDIATE`` transaction; any database error becomes the store's."""

    __slots__ = ("conn", "store")

    def __init__(self, store: SqliteIdempotencyStore) -> None:
        self.store = store

    def __enter__(self) -> Callable[..., sqlite3.Cursor]:
        import sqlite3

        try:
            self.conn = self.store._connection()
            self.conn.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError, ConfigurationError) as exc:
            raise _failed(self.store, exc) from exc
        return self.conn.execute

    def __exit__(self, kind: object, exc: Optional[BaseException], tb: object) -> None:
        import sqlite3

        try:
            self.conn.execute("COMMIT" if exc is None else "ROLLBACK")
        except sqlite3.Error as failure:
            if exc is None:
                raise _failed(self.store, failure) from failure
        if isinstance(exc, (sqlite3.Error, OSError)):
            raise _failed(self.store, exc) from exc


def _failed(store: SqliteIdempotencyStore, exc: BaseException) -> IdempotencyStoreError:
    reason = type(exc).__name__
    log.error(
        "idempotency store %s failed: %s",
        store.path, reason,
        extra={"mscomm.store": str(store.path), "mscomm.reason": reason},
    )  # fmt: skip
    return IdempotencyStoreError(
        f"idempotency store {store.path} failed ({reason})", store=repr(store), reason=reason
    )


def _decode(data: bytes, store: SqliteIdempotencyStore) -> StoredAnswer:
    try:
        return StoredAnswer.decode(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise _failed(store, exc) from exc


def _dead(pid: Optional[int]) -> bool:
    """Return whether the process ``pid`` on this host has died."""
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's, say)
    return False
