"""The file checks every host-wide replay store makes before it trusts its file.

Anyone who can write a host-wide store's file can erase the memory of a
message, so the file must be the caller's own: created mode 0600, never
followed through a symlink, never another user's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..errors import ConfigurationError
from .store import REPLAY_DB_ENV

__all__ = ["open_private_file", "store_path"]


def store_path(path: Union[str, os.PathLike[str]], max_entries: int) -> Path:
    """Check the arguments every host-wide store takes; return the path.

    Raises:
        ConfigurationError: the path is empty.
        ConfigurationError: ``max_entries`` is below 1.
    """
    if not os.fspath(path):
        raise ConfigurationError(
            "the replay store path is empty", variable=REPLAY_DB_ENV, reason="empty path"
        )
    if max_entries < 1:
        raise ConfigurationError(
            "max_entries must be at least 1", variable="max_entries", reason="invalid"
        )
    return Path(path)


def open_private_file(path: Path) -> int:
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
