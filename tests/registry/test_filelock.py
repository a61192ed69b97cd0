"""Bounded lock waits: a writer that holds the registry lock and stops cannot freeze the others."""

from __future__ import annotations

import fcntl
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mscomm_sync.errors import ConfigurationError, RegistryError
from mscomm_sync.registry import DEFAULT_LOCK_TIMEOUT, FileRegistry
from mscomm_sync.registry.filelock import acquire

StartWriter = Callable[[Path], subprocess.Popen[bytes]]


class FakeTime:
    """A clock and a sleep: sleeping moves the clock, nobody really waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def held_lock(registry_path: Path) -> Iterator[int]:
    """The registry's lock, held through another open file (as another process would)."""
    fd = os.open(str(registry_path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def test_held_lock_fails_the_write_after_the_timeout(
    registry_path: Path, held_lock: int, fake_time: FakeTime
) -> None:
    """A write waits lock_timeout seconds on the injected clock, then raises 'lock timeout'."""
    registry = FileRegistry(
        registry_path, lock_timeout=3, clock=fake_time.clock, sleep=fake_time.sleep
    )
    with pytest.raises(RegistryError) as info:
        registry.register("billing", "http://127.0.0.1:8001")
    assert (info.value.reason, info.value.location) == ("lock timeout", str(registry_path))
    assert sum(fake_time.sleeps) == pytest.approx(3.0)
    assert not registry_path.exists()


def test_lock_timeout_message_names_the_file_the_wait_and_what_to_check(
    registry_path: Path, held_lock: int, fake_time: FakeTime
) -> None:
    """The message says which lock file, how long it waited, and how to find the holder."""
    registry = FileRegistry(
        registry_path, lock_timeout=2.5, clock=fake_time.clock, sleep=fake_time.sleep
    )
    with pytest.raises(RegistryError) as info:
        registry.register("billing", "http://127.0.0.1:8001")
    message = str(info.value)
    assert f"{registry_path}.lock" in message
    assert "2.5 s" in message
    assert "fuser" in message and "SIGSTOP" in message


def test_zero_timeout_fails_at_once(
    registry_path: Path, held_lock: int, fake_time: FakeTime
) -> None:
    """lock_timeout=0 tries once and never sleeps."""
    registry = FileRegistry(
        registry_path, lock_timeout=0, clock=fake_time.clock, sleep=fake_time.sleep
    )
    with pytest.raises(RegistryError, match="lock"):
        registry.register("billing", "http://127.0.0.1:8001")
    assert fake_time.sleeps == []


def test_lock_freed_during_the_wait_is_taken(
    registry_path: Path, held_lock: int, fake_time: FakeTime
) -> None:
    """A lock released while a writer waits lets that write through."""

    def release_on_third_sleep() -> None:
        if len(fake_time.sleeps) == 3:
            fcntl.flock(held_lock, fcntl.LOCK_UN)

    fake_time.on_sleep = release_on_third_sleep
    registry = FileRegistry(registry_path, clock=fake_time.clock, sleep=fake_time.sleep)
    registry.register("billing", "http://127.0.0.1:8001")
    assert len(fake_time.sleeps) == 3
    assert [i.url for i in registry.get_instances("billing")] == ["http://127.0.0.1:8001"]


def test_default_timeout_is_five_seconds(registry_path: Path) -> None:
    """Without lock_timeout a writer waits DEFAULT_LOCK_TIMEOUT (5 s) at most."""
    assert DEFAULT_LOCK_TIMEOUT == 5.0
    assert FileRegistry(registry_path).lock_timeout == DEFAULT_LOCK_TIMEOUT


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, "5", True])
def test_invalid_lock_timeout_is_a_configuration_error(registry_path: Path, value: object) -> None:
    """A negative, infinite, NaN or non-number lock_timeout is refused, naming the option."""
    with pytest.raises(ConfigurationError) as info:
        FileRegistry(registry_path, lock_timeout=value)  # type: ignore[arg-type]
    assert info.value.variable == "lock_timeout"


def test_wait_is_bounded_even_by_a_clock_that_stands_still(
    held_lock: int, registry_path: Path
) -> None:
    """With a frozen clock, acquire still gives up once its pauses add up to the timeout."""
    sleeps: list[float] = []
    fd = os.open(str(registry_path) + ".lock", os.O_RDWR)
    try:
        got = acquire(fd, timeout=0.5, clock=lambda: 0.0, sleep=sleeps.append)
    finally:
        os.close(fd)
    assert got is False
    assert sum(sleeps) == pytest.approx(0.5)


@pytest.mark.reliability
def test_writer_stopped_holding_the_lock_fails_other_writes_within_the_bound(
    registry_path: Path, stopped_writer: StartWriter
) -> None:
    """A real process SIGSTOPped mid-write makes another write raise, instead of hanging."""
    stopped_writer(registry_path)
    registry = FileRegistry(registry_path, lock_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        registry.register("billing", "http://127.0.0.1:8001")
    assert info.value.reason == "lock timeout"
    assert time.monotonic() - started < 30  # a hang-versus-no-hang bound, not a timing claim


@pytest.mark.reliability
def test_stopped_writer_resumes_and_completes_its_write(
    registry_path: Path, stopped_writer: StartWriter
) -> None:
    """A timed-out waiter leaves the stopped writer's work alone: resumed, it completes."""
    writer = stopped_writer(registry_path)
    with pytest.raises(RegistryError):
        FileRegistry(registry_path, lock_timeout=0).register("billing", "http://127.0.0.1:8001")
    os.kill(writer.pid, signal.SIGCONT)
    assert writer.wait(timeout=60) == 0
    with FileRegistry(registry_path) as registry:
        assert registry.services() == ["stopped"]
