"""Replacing the registry file atomically, and clearing what crashed writers left.

A new version is written to a temporary file beside the registry
(``.<name>.XXXXXXXX.tmp``), ``fsync``-ed and renamed over it, so the name always
points at a complete version. A writer killed between creating the temporary
file and the rename leaves the file behind; :func:`remove_orphans` deletes such
files. It is safe only under the registry's exclusive lock (see there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile

__all__ = ["remove_orphans", "replace_file"]

log = logging.getLogger("mscomm_sync.registry")

_SUFFIX = ".tmp"
# tempfile.mkstemp names: the prefix, then 8 characters of this alphabet, then the suffix.
_RANDOM_PART = r"[a-z0-9_]{8}"


def _prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def replace_file(path: str, data: bytes) -> tuple[int, os.stat_result]:
    """Atomically replace ``path`` with ``data``, keeping the file's mode.

    A new file gets mode ``0644``. The directory is ``fsync``-ed after the
    rename, so the new version survives a power cut.

    Returns:
        A read-only descriptor of the new version (the caller owns it) and its
        ``fstat``.

    Raises:
        OSError: the temporary file could not be written or renamed; it has
            been removed.
    """
    directory = os.path.dirname(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_prefix(path), suffix=_SUFFIX)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.fchmod(fd, mode)
        st = os.fstat(fd)
        os.replace(tmp, path)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return fd, st


def remove_orphans(path: str) -> int:
    """Delete the temporary files of ``path`` that crashed writers left; never raises.

    Call it only while holding the registry's exclusive lock. A writer creates
    its temporary file after taking the lock and renames or deletes it before
    letting go, and the kernel releases the lock of a process that dies. So
    while this process holds the lock, no live writer has a temporary file,
    and every file that matches the name pattern is an orphan, however young.
    Only regular files named exactly as :func:`replace_file` names them are
    touched.

    Returns:
        How many files were removed.
    """
    directory = os.path.dirname(path)
    pattern = re.compile(re.escape(_prefix(path)) + _RANDOM_PART + re.escape(_SUFFIX))
    try:
        with os.scandir(directory) as entries:
            orphans = [
                e.path
                for e in entries
                if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)
            ]
    except OSError:
        return 0  # the write that follows reports a real problem with the directory
    removed = 0
    for orphan in orphans:
        try:
            os.unlink(orphan)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning(
                "cannot remove stale temporary file %s: %s", orphan, exc,
                extra={"mscomm.event": "registry cleanup", "mscomm.path": str(orphan),
                       "mscomm.reason": type(exc).__name__},
            )  # fmt: skip
            continue
        removed += 1
    if removed:
        log.info(
            "removed %d temporary file(s) left beside %s by crashed writers", removed, path,
            extra={"mscomm.event": "registry cleanup", "mscomm.path": str(path)},
        )  # fmt: skip
    return removed
