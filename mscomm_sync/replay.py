"""Replay stores: remember message ids so a captured message opens only once.

Trust model: an attacker on the network can capture a sealed request and send
it again, as many times and to as many workers as they like. The envelope's
timestamp window limits *how long* a capture is useful; the replay store makes
it useful *zero* times more. Its one operation, :meth:`ReplayStore.add`, must be
atomic insert-if-absent: of many concurrent deliveries of one message id,
exactly one may see ``True``.

A store only ever holds opaque message ids and expiry times, never keys or
plaintext. The host-wide stores, :class:`~mscomm_sync.replay_shm.ShmReplayStore`
(the default, a hash table in a shared memory map) and
:class:`~mscomm_sync.replay_sqlite.SqliteReplayStore`,
keep them in a file that every process of the host's user shares; it is
created readable and writable by that user only, because anyone who can write
it can erase the memory of a message.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from heapq import heappop, heappush
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Union, runtime_checkable

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .replay_shm import ShmReplayStore
    from .replay_sqlite import SqliteReplayStore

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "REPLAY_DB_ENV",
    "MemoryReplayStore",
    "ReplayStore",
    "default_replay_path",
    "default_replay_store",
]

DEFAULT_MAX_ENTRIES = 1_000_000
#: The environment variable that names the file of the host-wide default replay store.
REPLAY_DB_ENV = "MSCOMM_REPLAY_DB"
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
            heap = self._heap
            if heap and heap[0][0] <= now:
                self._evict(now)
            # Only unexpired ids remain: any expired one was just evicted.
            expiry = self._expiry
            if key in expiry or len(expiry) >= self.max_entries:
                return False
            expiry[key] = expires_at
            heappush(heap, (expires_at, key))
            return True

    def _evict(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires_at, key = heappop(heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._expiry)

    def __repr__(self) -> str:
        return f"<MemoryReplayStore entries={len(self._expiry)} max={self.max_entries}>"


def default_replay_path() -> Path:
    """Return the file of the host-wide default replay store.

    ``$MSCOMM_REPLAY_DB`` when set; otherwise a per-user file in ``/dev/shm``
    (tmpfs, so the table lives in memory) when that directory exists, else in
    the temporary directory: ``mscomm-replay-<uid>.table``, or
    ``mscomm-replay-<uid>.sqlite3`` where the default store is SQLite (see
    :func:`default_replay_store`).
    """
    configured = os.environ.get(REPLAY_DB_ENV)
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")  # noqa: S108 - tmpfs is the point; the file is per user, mode 0600
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    suffix = "table" if _can_map_shared() else "sqlite3"
    return base / f"mscomm-replay-{uid}.{suffix}"


def default_replay_store() -> Union[ShmReplayStore, SqliteReplayStore]:
    """Return the store used when none is given, at :func:`default_replay_path`.

    On POSIX systems it is a :class:`~mscomm_sync.replay_shm.ShmReplayStore`
    holding :data:`DEFAULT_MAX_ENTRIES` ids (48 MB of RAM on tmpfs, reserved
    when the file is created); elsewhere (no ``fcntl``) a
    :class:`~mscomm_sync.replay_sqlite.SqliteReplayStore` with the same bound (up to about 100 MB).
    Either is shared by every process of the user on the host.
    """
    path = default_replay_path()
    if _can_map_shared():
        from .replay_shm import ShmReplayStore

        return ShmReplayStore(path)
    from .replay_sqlite import SqliteReplayStore

    return SqliteReplayStore(path)


def _can_map_shared() -> bool:
    """Return whether this platform has what ShmReplayStore needs (flock and mmap)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("fcntl", "mmap"))


def _store_path(path: Union[str, os.PathLike[str]], max_entries: int) -> Path:
    """Check the arguments every host-wide store takes; return the path.

    Raises:
        ConfigurationError: the path is empty.
        ValueError: ``max_entries`` is below 1.
    """
    if not os.fspath(path):
        raise ConfigurationError(
            "the replay store path is empty", variable=REPLAY_DB_ENV, reason="empty path"
        )
    if max_entries < 1:
        raise ValueError("max_entries must be at least 1")
    return Path(path)


def _open_private_file(path: Path) -> int:
    """Open (creating it, mode 0600) a store's file that must be the caller's own.

    The file is opened with ``O_NOFOLLOW``: in a shared directory such as
    ``/dev/shm``, another user could plant a symlink under our file's name.

    Args:
        path: the file to open read-write.

    Returns:
        The open file descriptor; the caller closes it.

    Raises:
        ConfigurationError: the file belongs to another user.
        OSError: it cannot be opened (a symlink in its place raises ``ELOOP``).
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "getuid") and os.fstat(fd).st_uid != os.getuid():
            raise ConfigurationError(
                f"replay store file {path} belongs to another user; "
                f"set {REPLAY_DB_ENV} to a file of your own",
                variable=REPLAY_DB_ENV,
                reason="foreign owner",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd
