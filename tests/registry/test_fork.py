"""Registries survive fork(): locks held by other threads at the fork do not stay held."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from pathlib import Path

import pytest

from mscomm_sync.registry import FileRegistry
from mscomm_sync.registry.base import Instance

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def read_with_deadline(fd: int, seconds: float) -> bytes:
    """Read what the child reports, or b'' if it says nothing within ``seconds``."""
    ready, _, _ = select.select([fd], [], [], seconds)
    return os.read(fd, 1024) if ready else b""


def reap(pid: int) -> None:
    """Kill (if still running) and reap a child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_child_can_write_although_a_parent_thread_held_the_lock(tmp_path: Path) -> None:
    """A lock held by another thread at the fork is fresh in the child, so writes work there."""
    registry = FileRegistry(tmp_path / "r.json")
    release = threading.Event()
    holder = threading.Thread(
        target=lambda: registry._catalogue._lock.acquire() and release.wait(60)
    )
    holder.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            registry.register("child", "http://127.0.0.1:8001")
            os.write(write, str(len(registry.get_instances("child"))).encode())
        finally:
            os._exit(0)
    try:
        os.close(write)
        report = read_with_deadline(read, 60)
    finally:
        reap(pid)
        release.set()
        registry._catalogue._lock.release()
        holder.join(30)
        registry.close()
    assert report == b"1"


def test_child_does_not_keep_the_file_lock_a_parent_writer_held(tmp_path: Path) -> None:
    """If a parent thread was writing at the fork, the lock is released when it finishes."""
    path = tmp_path / "r.json"
    registry = FileRegistry(path)
    inside, release = threading.Event(), threading.Event()

    def slow_change(current: list[Instance]) -> list[Instance]:
        inside.set()
        release.wait(60)
        return current

    writer = threading.Thread(target=registry._update, args=(slow_change,))
    writer.start()
    assert inside.wait(60)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(write)
        read_with_deadline(read, 120)  # stay alive until the parent is done
        os._exit(0)
    try:
        os.close(read)
        release.set()
        writer.join(60)
        second = threading.Thread(
            target=lambda: FileRegistry(path).register("after", "http://127.0.0.1:8002")
        )
        second.start()
        second.join(60)
        finished = not second.is_alive()
    finally:
        os.close(write)
        reap(pid)
        registry.close()
    assert finished
