"""Fork hooks: reset registered objects in a forked child.

Threads do not survive ``fork()``, a lock another thread held at the fork
stays held forever in the child, and a file inherited from the parent shares
its locks with the parent's. A hook installed on first use (through
:func:`os.register_at_fork`) calls ``_reset_after_fork()`` on every object
registered with :func:`reset_after_fork`, in the child, right after the fork.

:class:`PerProcess` is the one way the package keeps state that belongs to
one process (sockets, locks, counts of requests in flight): it is rebuilt in
a forked child before any thread of the child can see it, exactly once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any, Callable, Generic, TypeVar

__all__ = ["PerProcess", "fork_generation", "reset_after_fork"]

T = TypeVar("T")

_fork_aware: weakref.WeakSet[Any] = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_installed = False
_fork_generation = 0


def fork_generation() -> int:
    """Return how many times this process is a forked child of a worker owner.

    Owners remember the value when they start workers and compare it on use:
    a different value means the process forked and workers need restarting.
    """
    return _fork_generation


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1
    for obj in list(_fork_aware):
        obj._reset_after_fork()


def reset_after_fork(obj: Any) -> None:
    """Have ``obj._reset_after_fork()`` called in every forked child of this process.

    The object is held weakly. The method runs in the child right after the
    fork, when only the forking thread exists: it must only replace locks and
    forget threads, never block.
    """
    _install_fork_hook()
    _fork_aware.add(obj)


def _install_fork_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hook_installed = True


class PerProcess(Generic[T]):
    """A value that belongs to one process, built afresh once in every forked child.

    In the child the value is rebuilt by the fork hook, right after the
    fork, while the forking thread is the only one. Should a fork bypass the
    hook (a C extension calling ``fork()`` itself), :meth:`get` rebuilds it
    instead, under a lock made for that process: threads that arrive while
    it is being built wait for it, and the value is published only once it
    is whole, so no thread ever sees the parent's value or a half-built one.

    Args:
        build: makes the value; called once per process (it must not block).
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._current: tuple[int, T] = (os.getpid(), build())  # read and written whole
        self._locks: dict[int, threading.Lock] = {}
        reset_after_fork(self)

    def get(self) -> T:
        """Return this process's value."""
        pid, value = self._current
        if pid == os.getpid():
            return value
        return self._rebuild()

    def _rebuild(self) -> T:
        pid = os.getpid()
        # setdefault is atomic: every thread of this process gets one lock.
        with self._locks.setdefault(pid, threading.Lock()):
            owner, value = self._current
            if owner != pid:
                value = self._build()
                self._current = (pid, value)  # published whole, once built
            return value

    def _reset_after_fork(self) -> None:
        # In the child, before any other thread exists.
        self._locks = {}
        # Never break a fork: if building fails here, get() builds it instead.
        with contextlib.suppress(Exception):
            self._current = (os.getpid(), self._build())

    def __repr__(self) -> str:
        return f"<PerProcess pid={self._current[0]}>"
