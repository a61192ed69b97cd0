"""Tests for mscomm_sync.forking: hooks that reset registered objects in a real forked child.

Each child reports only through its exit status and always leaves with ``os._exit``;
the parent waits for it with a deadline and kills it if the deadline passes.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
import weakref
from typing import Callable

import pytest

from mscomm_sync.forking import fork_generation, reset_after_fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: The exit status of a child whose check raised.
CRASHED = 99
WAIT_SECONDS = 30.0


class Resettable:
    """Counts how many times its fork hook ran in this process."""

    def __init__(self) -> None:
        self.resets = 0

    def _reset_after_fork(self) -> None:
        self.resets += 1


def wait_for_exit(pid: int, seconds: float = WAIT_SECONDS) -> int:
    """Return the exit status of child ``pid``; kill it and fail if it runs past ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        pause.wait(0.005)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not exit within {seconds}s")


def in_child(check: Callable[[], int]) -> int:
    """Fork; run ``check`` in the child and exit with what it returns; return that status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = CRASHED
        try:
            status = check()
        finally:
            os._exit(status)
    return wait_for_exit(pid)


def test_registered_object_is_reset_in_the_child() -> None:
    """A registered object's _reset_after_fork runs once in the forked child."""
    obj = Resettable()
    reset_after_fork(obj)
    assert in_child(lambda: obj.resets) == 1


def test_registered_object_is_not_reset_in_the_parent() -> None:
    """Forking leaves the parent's registered objects untouched."""
    obj = Resettable()
    reset_after_fork(obj)
    assert in_child(lambda: 0) == 0
    assert obj.resets == 0


def test_every_registered_object_is_reset() -> None:
    """All registered objects are reset in the child, not just the latest."""
    objs = [Resettable() for _ in range(5)]
    for obj in objs:
        reset_after_fork(obj)
    assert in_child(lambda: sum(obj.resets for obj in objs)) == 5


def test_registering_twice_resets_once() -> None:
    """An object registered twice is reset once per fork."""
    obj = Resettable()
    reset_after_fork(obj)
    reset_after_fork(obj)
    assert in_child(lambda: obj.resets) == 1


def test_fork_generation_increments_in_the_child() -> None:
    """The child's fork_generation is one more than the parent's."""
    reset_after_fork(Resettable())  # installs the hook
    before = fork_generation()
    assert in_child(lambda: fork_generation() - before) == 1


def test_fork_generation_is_unchanged_in_the_parent() -> None:
    """Forking does not move the parent's fork_generation."""
    reset_after_fork(Resettable())
    before = fork_generation()
    in_child(lambda: 0)
    assert fork_generation() == before


def test_a_grandchild_is_one_generation_further() -> None:
    """A child's own child counts two forks, and is reset again."""
    obj = Resettable()
    reset_after_fork(obj)
    before = fork_generation()

    def fork_again() -> int:
        return in_child(lambda: 10 * (fork_generation() - before) + obj.resets)

    assert in_child(fork_again) == 22


def test_registered_objects_are_held_weakly() -> None:
    """Registering an object does not keep it alive."""
    obj = Resettable()
    reset_after_fork(obj)
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_a_collected_object_is_not_reset() -> None:
    """Once a registered object is gone, the child's hook skips it and resets the living."""
    resets_seen: list[str] = []

    class Noisy(Resettable):
        def _reset_after_fork(self) -> None:
            resets_seen.append("collected one ran")

    gone, alive = Noisy(), Resettable()
    reset_after_fork(gone)
    reset_after_fork(alive)
    del gone
    gc.collect()
    assert in_child(lambda: len(resets_seen) * 10 + alive.resets) == 1
