"""Fork hooks: reset registered objects in a forked child.

Threads do not survive ``fork()``, a lock another thread held at the fork
stays held forever in the child, and a file inherited from the parent shares
its locks with the parent's. A hook installed on first use (through
:func:`os.register_at_fork`) calls ``_reset_after_fork()`` on every object
registered with :func:`reset_after_fork`, in the child, right after the fork.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

__all__ = ["fork_generation", "reset_after_fork"]

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
