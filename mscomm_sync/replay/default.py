"""The replay store used when none is given: host-wide, in a file every process shares."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Union

from .shm import ShmReplayStore
from .sqlite import SqliteReplayStore
from .store import REPLAY_DB_ENV

__all__ = ["default_replay_path", "default_replay_store"]


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

    On POSIX systems it is a :class:`~mscomm_sync.replay.shm.ShmReplayStore`
    holding ``DEFAULT_MAX_ENTRIES`` ids (48 MB of RAM on tmpfs, reserved
    when the file is created); elsewhere (no ``fcntl``) a
    :class:`~mscomm_sync.replay.sqlite.SqliteReplayStore` with the same bound (up to about 100 MB).
    Either is shared by every process of the user on the host.
    """
    path = default_replay_path()
    if _can_map_shared():
        return ShmReplayStore(path)
    return SqliteReplayStore(path)


def _can_map_shared() -> bool:
    """Return whether this platform has what ShmReplayStore needs (flock and mmap)."""
    return all(importlib.util.find_spec(name) is not None for name in ("fcntl", "mmap"))
