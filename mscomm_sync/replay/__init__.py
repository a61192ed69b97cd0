"""Replay stores: remember message ids so that a captured message opens only once.

* :mod:`.store`: the :class:`ReplayStore` protocol (one atomic ``add``);
* :mod:`.memory`: :class:`MemoryReplayStore`, for one process;
* :mod:`.shm`: :class:`ShmReplayStore`, the host-wide default, a hash table
  in a shared memory map;
* :mod:`.sqlite`: :class:`SqliteReplayStore`, host-wide, in SQLite;
* :mod:`.files`: the checks both host-wide stores make of their file;
* :mod:`.default`: which store, and which file, is used when none is given.

The host-wide stores keep their ids in a file that every process of the
host's user shares; it is created readable and writable by that user only,
because anyone who can write it can erase the memory of a message.
"""

from .default import default_replay_path, default_replay_store
from .memory import MemoryReplayStore
from .shm import ShmReplayStore
from .sqlite import SqliteReplayStore
from .store import DEFAULT_MAX_ENTRIES, REPLAY_DB_ENV, ReplayStore

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "REPLAY_DB_ENV",
    "MemoryReplayStore",
    "ReplayStore",
    "ShmReplayStore",
    "SqliteReplayStore",
    "default_replay_path",
    "default_replay_store",
]
