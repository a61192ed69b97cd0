"""The embedded registry: one JSON file shared by the processes of one host.

Writers take an exclusive ``flock`` on a sidecar ``<file>.lock``, waiting a
bounded time for it, read the current file, and replace it atomically
(temporary file, ``fsync``, ``os.replace``), so concurrent writers lose nothing
and a reader never sees a torn file. Under the lock a writer also removes the
temporary files of writers that crashed: a temporary file exists only while its
writer holds the lock, so one found by the lock's holder is an orphan.

Readers ``stat`` the file on each lookup and parse it only when its
``(mtime_ns, size, inode)`` changes. The version last read is kept open so
that its inode cannot be reused by a later version, which would hide a change.
Reads never create anything: a missing file reads as empty until the first
registration creates it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random as _random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional, Union

from ..errors import RegistryError
from ..telemetry.process import count_registry_error
from .atomic import remove_orphans, replace_file
from .backend import BaseRegistry
from .base import Instance
from .fileformat import DocumentError, decode, encode
from .filelock import DEFAULT_LOCK_TIMEOUT, acquire, checked_timeout
from .health import HealthCheckConfig

__all__ = ["DEFAULT_LOCK_TIMEOUT", "FileRegistry"]

log = logging.getLogger("mscomm_sync.registry")

Signature = tuple[int, int, int]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileRegistry(BaseRegistry):
    """A registry kept in a JSON file (see :mod:`mscomm_sync.registry.fileformat`).

    Opening the registry creates nothing: a missing file reads as empty
    (:attr:`exists` is False) and the first write creates it. Its directory
    must exist unless ``create_parents`` is set, so that a mistyped path fails
    instead of starting a second registry nobody reads.

    Args:
        path: the registry file.
        lock_timeout: the longest wait, in seconds, for another writer's lock
            before a write raises; ``None`` means :data:`DEFAULT_LOCK_TIMEOUT`,
            ``0`` tries once.
        create_parents: let a write create the file's missing directories.
        health_check: health-check settings.
        health_check_interval: if given, start health checks at once with
            this interval in seconds.
        clock: a monotonic clock in seconds; also times lock waits.
        sleep: pauses between tries for a held lock.
        random: returns a float in ``[0, 1)``; drives jitter.

    Raises:
        ConfigurationError: ``lock_timeout`` is negative or not a number.
        RegistryError: the file exists and cannot be read or is not a valid
            registry document.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        lock_timeout: Optional[float] = None,
        create_parents: bool = False,
        health_check: Optional[HealthCheckConfig] = None,
        health_check_interval: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        timeout = checked_timeout(lock_timeout)
        super().__init__(health_check=health_check, clock=clock, random=random)
        self.path = os.path.abspath(os.fspath(path))
        self.location = self.path
        self.lock_path = self.path + ".lock"
        self.lock_timeout = timeout
        self.create_parents = create_parents
        self._sleep = sleep
        self._reload_lock = threading.Lock()
        self._signature: Optional[Signature] = None
        self._held_fd: Optional[int] = None
        self._stored: Optional[list[Instance]] = None
        self._lock_fds: set[int] = set()
        self._reload(first=True)
        if health_check_interval is not None:
            self.start_health_checks(health_check_interval)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the way to open this file again (its health checks are not running)."""
        reopen = functools.partial(
            FileRegistry,
            self.path,
            lock_timeout=self.lock_timeout,
            create_parents=self.create_parents,
            health_check=self.health_check,
        )
        return (reopen, ())

    # -- writes ----------------------------------------------------------

    def _store(self, inst: Instance) -> None:
        def upsert(current: list[Instance]) -> list[Instance]:
            if any(old.key == inst.key for old in current):
                return [inst if old.key == inst.key else old for old in current]
            return [*current, inst]

        self._update(upsert)

    def deregister(self, name: str, url: str) -> bool:
        """Remove the instance ``(name, url)``.

        Removing an absent instance writes nothing, and from a missing file
        creates nothing.

        Returns:
            True if it was registered, False if there was nothing to remove.

        Raises:
            RegistryError: the file cannot be read or written, or its lock
                stayed held for ``lock_timeout`` seconds.
        """
        key = (name, url.rstrip("/"))
        if not self.exists:
            return False
        return self._update(lambda current: [inst for inst in current if inst.key != key])

    def _update(self, change: Callable[[list[Instance]], list[Instance]]) -> bool:
        """Apply ``change`` under the lock; write and return True unless it changed nothing."""
        with self._exclusive():
            current = self._read_locked()
            instances = change(current)
            if instances == current and os.path.exists(self.path):
                return False
            self._write(encode(instances), instances)
            return True

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

    @property
    def exists(self) -> bool:
        """Whether the registry file exists now (False before the first write)."""
        return os.path.exists(self.path)

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
                if first and isinstance(exc, FileNotFoundError):
                    # Not an error: nothing has registered here yet. Reads
                    # must not create it (a mistyped path would look right).
                    log.info(
                        "registry file %s does not exist yet; it reads as empty", self.path,
                        extra={"mscomm.event": "registry missing", "mscomm.path": str(self.path)},
                    )  # fmt: skip
                    return
                if first:
                    raise self._io_error("open", exc) from exc
                count_registry_error("file", "cannot open")
                log.warning(
                    "registry file %s cannot be opened (%s); keeping last good data",
                    self.path,
                    type(exc).__name__,
                    extra={"mscomm.event": "registry unreadable", "mscomm.path": str(self.path),
                           "mscomm.reason": type(exc).__name__},
                )  # fmt: skip
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
                count_registry_error("file", "unreadable")
                log.warning(
                    "registry file %s is unreadable (%s); keeping the last good data "
                    "(%d instances)",
                    self.path,
                    exc,
                    len(self._catalogue),
                    extra={"mscomm.event": "registry unreadable", "mscomm.path": str(self.path),
                           "mscomm.reason": type(exc).__name__},
                )  # fmt: skip
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
        self._ensure_directory()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644)
        except OSError as exc:
            raise self._io_error("lock", exc) from exc
        self._lock_fds.add(fd)
        try:
            if not acquire(fd, timeout=self.lock_timeout, clock=self._clock, sleep=self._sleep):
                raise self._lock_timeout()
            remove_orphans(self.path)
            yield
        finally:
            self._lock_fds.discard(fd)
            os.close(fd)  # the last close of the descriptor releases the lock

    def _ensure_directory(self) -> None:
        directory = os.path.dirname(self.path)
        if os.path.isdir(directory):
            return
        if not self.create_parents:
            raise RegistryError(
                f"cannot create registry file {self.path}: its directory {directory} does not "
                "exist. Check the path (--registry, MSCOMM_REGISTRY); to create the directory, "
                "pass create_parents=True (mscomm registry register --create-parents)",
                location=self.path,
                reason="missing directory",
            )
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise self._io_error("create the directory of", exc) from exc

    def _write(self, data: bytes, instances: list[Instance]) -> None:
        """Atomically replace the file with ``data`` (which encodes ``instances``)."""
        try:
            fd, st = replace_file(self.path, data)
        except OSError as exc:
            raise self._io_error("write", exc) from exc
        with self._reload_lock:
            self._adopt(fd, (st.st_mtime_ns, st.st_size, st.st_ino), instances)

    def _release_held(self) -> None:
        fd, self._held_fd = self._held_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _lock_timeout(self) -> RegistryError:
        return RegistryError(
            f"registry file {self.path} stayed locked: waited {self.lock_timeout:g} s for the "
            f"write lock on {self.lock_path}. Another process holds it and is not finishing: a "
            "writer stopped (SIGSTOP, a debugger) or hung. Find it with "
            f"`fuser -v {self.lock_path}`, then resume or end it",
            location=self.path,
            reason="lock timeout",
        )

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
