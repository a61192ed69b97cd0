"""The embedded registry: one JSON file shared by the processes of one host.

Writers take an exclusive ``flock`` on a sidecar ``<file>.lock``, read the
current file, and replace it atomically (temporary file, ``fsync``,
``os.replace``), so concurrent writers lose nothing and a reader never sees a
torn file. Readers ``stat`` the file on each lookup and parse it only when its
``(mtime_ns, size, inode)`` changes. The version last read is kept open so
that its inode cannot be reused by a later version, which would hide a change.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random as _random
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Optional, Union

from ..errors import RegistryError
from .backend import BaseRegistry
from .base import Instance
from .fileformat import DocumentError, decode, empty_document, encode
from .health import HealthCheckConfig

__all__ = ["FileRegistry"]

log = logging.getLogger("mscomm_sync.registry")

Signature = tuple[int, int, int]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileRegistry(BaseRegistry):
    """A registry kept in a JSON file (see :mod:`mscomm_sync.registry.fileformat`).

    Args:
        path: the registry file; it and its directory are created if missing.
        health_check: health-check settings.
        health_check_interval: if given, start health checks at once with
            this interval in seconds.
        clock: a monotonic clock in seconds.
        random: returns a float in ``[0, 1)``; drives jitter.

    Raises:
        RegistryError: the file cannot be created, or exists and is not a
            valid registry document.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        health_check: Optional[HealthCheckConfig] = None,
        health_check_interval: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        super().__init__(health_check=health_check, clock=clock, random=random)
        self.path = os.path.abspath(os.fspath(path))
        self.location = self.path
        self.lock_path = self.path + ".lock"
        self._reload_lock = threading.Lock()
        self._signature: Optional[Signature] = None
        self._held_fd: Optional[int] = None
        self._stored: Optional[list[Instance]] = None
        self._lock_fds: set[int] = set()
        self._create_if_missing()
        self._reload(first=True)
        if health_check_interval is not None:
            self.start_health_checks(health_check_interval)

    # -- writes ----------------------------------------------------------

    def _store(self, inst: Instance) -> None:
        def upsert(current: list[Instance]) -> list[Instance]:
            if any(old.key == inst.key for old in current):
                return [inst if old.key == inst.key else old for old in current]
            return [*current, inst]

        self._update(upsert)

    def deregister(self, name: str, url: str) -> None:
        """Remove the instance ``(name, url)``; an absent one is ignored.

        Raises:
            RegistryError: the file cannot be read or written.
        """
        key = (name, url.rstrip("/"))
        self._update(lambda current: [inst for inst in current if inst.key != key])

    def _update(self, change: Callable[[list[Instance]], list[Instance]]) -> None:
        with self._exclusive():
            instances = change(self._read_locked())
            self._write(encode(instances), instances)

    def _read_locked(self) -> list[Instance]:
        """Return the current instances; the caller holds the exclusive lock."""
        with self._reload_lock:
            try:
                fd = os.open(self.path, os.O_RDONLY | _CLOEXEC)
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise self._io_error("read", exc) from exc
            st = os.fstat(fd)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if signature == self._signature and self._stored is not None:
                os.close(fd)
                return list(self._stored)
            try:
                with open(fd, "rb", closefd=False) as f:
                    instances = decode(f.read())
            except (DocumentError, OSError) as exc:
                os.close(fd)
                raise self._corrupt(exc) from exc
            self._adopt(fd, signature, instances)
            return list(instances)

    # -- reads -----------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the file now if it changed (lookups already do this)."""
        self._maybe_reload()

    def _maybe_reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._signature:
            self._reload()

    def _reload(self, *, first: bool = False) -> None:
        with self._reload_lock:
            try:
                fd = os.open(self.path, os.O_RDONLY | _CLOEXEC)
            except OSError as exc:
                if first:
                    raise self._io_error("open", exc) from exc
                log.warning(
                    "registry file %s cannot be opened (%s); keeping last good data",
                    self.path,
                    type(exc).__name__,
                )
                return
            st = os.fstat(fd)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if signature == self._signature:
                os.close(fd)
                return
            try:
                with open(fd, "rb", closefd=False) as f:
                    instances: Optional[list[Instance]] = decode(f.read())
            except (DocumentError, OSError) as exc:
                if first:
                    os.close(fd)
                    raise self._corrupt(exc) from exc
                log.warning(
                    "registry file %s is unreadable (%s); keeping the last good data "
                    "(%d instances)",
                    self.path,
                    exc,
                    len(self._catalogue),
                )
                instances = None
            self._adopt(fd, signature, instances)

    def _adopt(self, fd: int, signature: Signature, instances: Optional[list[Instance]]) -> None:
        """Make the version open at ``fd`` current; ``None`` marks it unreadable.

        The caller holds ``_reload_lock``. The descriptor stays open so that
        this version's inode cannot come back with a newer version of the same
        size and mtime. An unreadable version is remembered too, so that it is
        parsed once, not on every lookup.
        """
        if instances is not None:
            self._catalogue.replace(instances)
        self._stored = instances
        self._release_held()
        self._held_fd = fd
        self._signature = signature

    # -- file mechanics --------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644)
        except OSError as exc:
            raise self._io_error("lock", exc) from exc
        self._lock_fds.add(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            self._lock_fds.discard(fd)
            os.close(fd)  # the last close of the descriptor releases the lock

    def _create_if_missing(self) -> None:
        if os.path.exists(self.path):
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as exc:
            raise self._io_error("create directory for", exc) from exc
        with self._exclusive():
            if not os.path.exists(self.path):
                self._write(empty_document(), [])

    def _write(self, data: bytes, instances: list[Instance]) -> None:
        """Atomically replace the file with ``data`` (which encodes ``instances``)."""
        directory, base = os.path.split(self.path)
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            mode = 0o644
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
        except OSError as exc:
            raise self._io_error("write", exc) from exc
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, mode)
            st = os.fstat(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._io_error("write", exc) from exc
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        with self._reload_lock:
            self._adopt(fd, (st.st_mtime_ns, st.st_size, st.st_ino), instances)

    def _release_held(self) -> None:
        fd, self._held_fd = self._held_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _corrupt(self, exc: BaseException) -> RegistryError:
        return RegistryError(
            f"registry file {self.path} is not a valid registry document: {exc}",
            location=self.path,
            reason="corrupt",
        )

    def _io_error(self, action: str, exc: OSError) -> RegistryError:
        return RegistryError(
            f"cannot {action} registry file {self.path}: {exc.strerror or exc}",
            location=self.path,
            reason=type(exc).__name__,
        )

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        self._reload_lock = threading.Lock()
        # A flock belongs to the open file, which the child now shares: if a
        # parent thread was writing at the fork, the child's copy of that
        # descriptor would hold the lock for every process until it exits.
        for fd in list(self._lock_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._lock_fds = set()

    def close(self) -> None:
        """Stop health checks and release the file descriptor held for change detection."""
        super().close()
        with self._reload_lock:
            self._release_held()
            self._signature = None
            self._stored = None
