"""ShmReplayStore: the host-wide replay store in a shared, memory-mapped hash table."""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import multiprocessing
import os
import queue
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mscomm_sync import ShmReplayStore
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.replay import REPLAY_DB_ENV, ReplayStore
from mscomm_sync.replay import shm as replay_shm
from mscomm_sync.replay.shm import _BUCKET, _DIGESTS, _HEADER, _HEADER_SIZE
from mscomm_sync.replay.sqlite import SqliteReplayStore

FOREVER = 4_000_000_000.0
FORK = multiprocessing.get_context("fork")


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "replay.table"


@pytest.fixture
def replay_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="mscomm_sync.replay")
    return caplog


def placement(path: Path, key: str) -> tuple[bytes, list[int]]:
    """Compute, from the file's header alone, an id's digest and its two buckets' offsets."""
    with open(path, "rb") as f:
        _, _, _, buckets, hash_key = _HEADER.unpack(f.read(_HEADER.size))
    digest = hashlib.blake2b(key.encode(), digest_size=16, key=hash_key).digest()
    halves = struct.unpack("<QQ", digest)
    return digest, [_HEADER_SIZE + half % buckets * _BUCKET for half in halves]


def test_first_add_is_fresh_second_is_not(path: Path) -> None:
    """A key is accepted once and refused while it has not expired."""
    clock = FakeClock()
    store = ShmReplayStore(path, max_entries=1000, clock=clock)
    assert store.add("orders/a", clock.now + 60) is True
    assert store.add("orders/a", clock.now + 60) is False
    assert store.add("orders/b", clock.now + 60) is True
    assert len(store) == 2


def test_expired_key_is_accepted_again(path: Path) -> None:
    """Once its expiry has passed, a key's slot is free and the key counts as absent."""
    clock = FakeClock()
    store = ShmReplayStore(path, max_entries=1000, clock=clock)
    assert store.add("orders/a", clock.now + 60)
    clock.now += 59.5
    assert not store.add("orders/a", clock.now + 60)
    clock.now += 1
    assert len(store) == 0
    assert store.add("orders/a", clock.now + 60)
    assert not store.add("orders/a", clock.now + 60)


def test_an_already_expired_key_is_accepted_and_not_kept(path: Path) -> None:
    """expires_at <= now: fresh (as in the other stores), and it takes no slot."""
    clock = FakeClock()
    store = ShmReplayStore(path, max_entries=8, clock=clock)
    assert store.add("orders/a", clock.now)
    assert store.add("orders/a", clock.now - 1)
    assert len(store) == 0


def test_store_satisfies_protocol(path: Path) -> None:
    assert isinstance(ShmReplayStore(path), ReplayStore)


def test_bad_arguments_are_configuration_errors(path: Path) -> None:
    """An empty path or a bound below one is refused when the store is built."""
    with pytest.raises(ConfigurationError) as raised:
        ShmReplayStore("")
    assert raised.value.variable == REPLAY_DB_ENV
    with pytest.raises(ValueError, match="max_entries"):
        ShmReplayStore(path, max_entries=0)


@pytest.mark.parametrize("slow_commit", [False, True], ids=["plain", "slow-commit"])
def test_concurrent_threads_see_exactly_one_fresh(
    path: Path, monkeypatch: pytest.MonkeyPatch, slow_commit: bool
) -> None:
    """Eight threads adding the same 200 keys at once: each key is fresh exactly once.

    Threads share the process's open file, whose flock does not exclude them
    from each other. The slow variant sleeps between writing a slot's digest
    and its expiry, so that another thread surely runs in between.
    """
    if slow_commit:
        commit = replay_shm._EXPIRY

        def slow(*args: Any) -> None:
            time.sleep(0.0005)
            commit(*args)

        monkeypatch.setattr(replay_shm, "_EXPIRY", slow)
    store = ShmReplayStore(path, max_entries=10_000)
    keys = [f"orders/{i}" for i in range(200)]
    barrier = threading.Barrier(8)

    def run(_: int) -> list[bool]:
        barrier.wait()
        return [store.add(key, FOREVER) for key in keys]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(8)))
    assert all(sum(r[i] for r in results) == 1 for i in range(len(keys)))


def _race(
    store: ShmReplayStore | None,
    path: str,
    keys: list[str],
    barrier: threading.Barrier,
    results: multiprocessing.Queue[list[bool]],
) -> None:
    own = store if store is not None else ShmReplayStore(path, max_entries=10_000)
    barrier.wait(30)
    results.put([own.add(key, FOREVER) for key in keys])


@pytest.mark.parametrize("inherited", [False, True], ids=["own-store", "store-made-before-fork"])
def test_forked_processes_see_exactly_one_fresh(path: Path, inherited: bool) -> None:
    """Four processes adding the same 300 keys at once: each key is fresh in exactly one."""
    store = ShmReplayStore(path, max_entries=10_000) if inherited else None
    if store is not None:
        assert store.add("orders/parent", FOREVER)  # mapped in the parent before fork
    keys = [f"orders/{i}" for i in range(300)]
    barrier = FORK.Barrier(4)
    results: multiprocessing.Queue[list[bool]] = FORK.Queue()
    children = [
        FORK.Process(target=_race, args=(store, str(path), keys, barrier, results))
        for _ in range(4)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert all(sum(o[i] for o in outcomes) == 1 for i in range(len(keys)))


def _add_and_report(store: ShmReplayStore, key: str, results: multiprocessing.Queue[bool]) -> None:
    results.put(store.add(key, FOREVER))


def _close_then_add(store: ShmReplayStore, key: str, results: multiprocessing.Queue[bool]) -> None:
    store.close()
    results.put(store.add(key, FOREVER))


def test_store_used_before_fork_works_in_children_and_parent(path: Path) -> None:
    """A store mapped before fork() is shared with its children, both ways."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    results: multiprocessing.Queue[bool] = FORK.Queue()
    for key in ("orders/parent", "orders/child"):
        child = FORK.Process(target=_add_and_report, args=(store, key, results))
        child.start()
        child.join(30)
        assert child.exitcode == 0
    assert [results.get(timeout=10), results.get(timeout=10)] == [False, True]
    assert not store.add("orders/child", FOREVER)
    assert store.add("orders/parent-again", FOREVER)


def test_close_in_a_forked_child_leaves_the_parents_mapping(path: Path) -> None:
    """close() in a child does not touch what it inherited; both processes go on."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    results: multiprocessing.Queue[bool] = FORK.Queue()
    child = FORK.Process(target=_close_then_add, args=(store, "orders/child", results))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert results.get(timeout=10)
    assert not store.add("orders/child", FOREVER)
    assert store.add("orders/parent-again", FOREVER)


def test_fork_while_a_parent_thread_holds_the_lock(path: Path) -> None:
    """A child forked while the parent's thread lock is held does not inherit the hold."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    table = store._table
    assert table is not None
    results: multiprocessing.Queue[bool] = FORK.Queue()
    with table.lock:
        child = FORK.Process(target=_add_and_report, args=(store, "orders/child", results))
        child.start()
        child.join(30)
    assert child.exitcode == 0
    assert results.get(timeout=10)


def test_another_process_waits_for_the_file_lock(path: Path) -> None:
    """While one process holds the file lock, another's add() waits, then goes ahead."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    table = store._table
    assert table is not None
    results: multiprocessing.Queue[bool] = FORK.Queue()
    table.lock_file()
    try:
        child = FORK.Process(target=_add_and_report, args=(store, "orders/child", results))
        child.start()
        with pytest.raises(queue.Empty):
            results.get(timeout=0.5)  # it cannot have finished: we hold the lock
    finally:
        table.unlock_file()
    assert results.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0


def _hold_the_lock(path: str, holding: Any, release: Any) -> None:
    """Lock the table file from another process, as a stopped worker would, until told."""
    import fcntl

    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    holding.set()
    release.wait(30)


def test_a_lock_held_too_long_refuses_instead_of_hanging(
    path: Path, monkeypatch: pytest.MonkeyPatch, replay_log: pytest.LogCaptureFixture
) -> None:
    """A process that keeps the file lock (stopped, in a debugger) makes add() refuse after
    the lock timeout, logged, rather than hang; once it lets go, adds work again."""
    monkeypatch.setattr(replay_shm, "_LOCK_TIMEOUT", 0.3)
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/before", FOREVER)
    holding, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_the_lock, args=(str(path), holding, release))
    holder.start()
    try:
        assert holding.wait(30)
        assert not store.add("orders/while-held", FOREVER)
        assert any("stayed locked" in r.getMessage() for r in replay_log.records)
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
    assert store.add("orders/while-held", FOREVER)  # the refused id was never recorded


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an orphan that exited may linger as a zombie: not running)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(release: Any) -> None:
    release.wait(30)


def _fork_while_a_thread_holds_the_lock(path: str, ready: Any, release: Any, pids: Any) -> None:
    """Map the table, have a thread take the file lock, fork a long-lived child, then die."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    table = store._table
    assert table is not None
    held = threading.Event()

    def hold() -> None:
        table.lock_file()
        held.set()
        time.sleep(60)

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(30)
    child = FORK.Process(target=_wait_for, args=(release,))
    child.start()
    pids.value = child.pid  # shared memory: set before we die, unlike a queue's put()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_forked_child_does_not_keep_a_dead_parents_lock(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child forked while a parent thread held the file lock closes its copy of the file:
    when the parent dies, the lock is free for everyone else though the child lives on."""
    monkeypatch.setattr(replay_shm, "_LOCK_TIMEOUT", 2.0)
    ready, release, pids = FORK.Event(), FORK.Event(), FORK.Value("i", 0)
    parent = FORK.Process(
        target=_fork_while_a_thread_holds_the_lock, args=(str(path), ready, release, pids)
    )
    parent.start()
    child_pid = None
    try:
        assert ready.wait(30)
        child_pid = pids.value
        # Not join(): the child holds the parent's sentinel pipe open.
        for _ in range(300):
            if parent.exitcode is not None:
                break
            time.sleep(0.1)
        assert parent.exitcode == -signal.SIGKILL
        assert _alive(child_pid)
        assert ShmReplayStore(path, max_entries=1000).add("orders/after", FOREVER)
    finally:
        release.set()
        if child_pid is not None:
            for _ in range(300):  # it exits on release; not our child, so poll
                if not _alive(child_pid):
                    break
                time.sleep(0.1)


def _die_mid_add(store: ShmReplayStore, path: str, key: str) -> None:
    """Take the file lock, write only the digest of ``key`` into a free slot, and be killed."""
    assert store.add("orders/child-warm-up", FOREVER)
    table = store._table
    assert table is not None
    digest, (one, _) = placement(Path(path), key)
    table.lock_file()
    table.mm[one : one + 16] = digest  # slot 0: its expiry, the commit, never comes
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_process_killed_mid_add_leaves_no_lock_and_no_false_replay(path: Path) -> None:
    """A worker killed holding the lock, after a torn write, blocks no one and refuses nothing."""
    store = ShmReplayStore(path, max_entries=1000)
    assert store.add("orders/parent", FOREVER)
    child = FORK.Process(target=_die_mid_add, args=(store, str(path), "orders/torn"))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    outcome: list[bool] = []
    adder = threading.Thread(target=lambda: outcome.append(store.add("orders/torn", FOREVER)))
    adder.start()
    adder.join(30)
    assert not adder.is_alive(), "the dead process's file lock was not released"
    assert outcome == [True]
    assert not store.add("orders/torn", FOREVER)


def test_a_misaligned_match_is_not_a_replay(path: Path) -> None:
    """A digest that appears across two slots' bytes does not count as recorded."""
    clock = FakeClock()
    store = ShmReplayStore(path, max_entries=1000, clock=clock)
    assert store.add("orders/warm-up", clock.now + 60)
    digest, (one, _) = placement(path, "orders/x")
    table = store._table
    assert table is not None
    # Slots 0 and 1 are live and hold the digest between them, 8 bytes off.
    table.mm[one + 8 : one + 24] = digest
    struct.pack_into("<2d", table.mm, one + _DIGESTS, clock.now + 60, clock.now + 60)
    assert store.add("orders/x", clock.now + 60)
    assert not store.add("orders/x", clock.now + 60)


def test_a_full_table_refuses_then_recovers_after_expiry(
    path: Path, replay_log: pytest.LogCaptureFixture
) -> None:
    """With every slot of an id's buckets live, it is refused (logged, throttled) until expiry."""
    clock = FakeClock()
    store = ShmReplayStore(path, max_entries=8, clock=clock)  # 2 buckets of 8 slots
    added = [store.add(f"orders/{i}", clock.now + 60) for i in range(200)]
    assert sum(added) == 16
    assert len(store) == 16
    full = [r for r in replay_log.records if "is full" in r.getMessage()]
    assert full and all(r.levelno == logging.ERROR for r in full)
    assert len(full) < added.count(False)  # throttled, not one line per refusal
    assert not store.add("orders/0", clock.now + 60)
    clock.now += 61
    assert store.add("orders/new", clock.now + 60)
    assert store.add("orders/0", clock.now + 60)
    assert "orders/" not in replay_log.text


def test_table_size_follows_max_entries(path: Path) -> None:
    """The file holds one 192-byte bucket per four ids, after a 4096-byte header."""
    ShmReplayStore(path, max_entries=1001).add("orders/a", FOREVER)
    assert path.stat().st_size == _HEADER_SIZE + 251 * _BUCKET


def test_an_existing_tables_size_wins(path: Path, replay_log: pytest.LogCaptureFixture) -> None:
    """A store asked for another size uses the file's, and says so at INFO."""
    assert ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    bigger = ShmReplayStore(path, max_entries=1000)
    assert not bigger.add("orders/a", FOREVER)
    assert bigger.add("orders/b", FOREVER)
    assert path.stat().st_size == _HEADER_SIZE + 2 * _BUCKET
    assert any(r.levelno == logging.INFO and "8 ids" in r.getMessage() for r in replay_log.records)


def test_file_is_private(path: Path) -> None:
    """The table is created readable and writable by its owner only."""
    ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_symlink_in_place_of_the_table_is_refused(tmp_path: Path) -> None:
    """A symlink planted under the table's name is not followed: add() fails closed."""
    target = tmp_path / "elsewhere.table"
    ShmReplayStore(target, max_entries=8).add("orders/a", FOREVER)
    planted = tmp_path / "replay.table"
    planted.symlink_to(target)
    assert not ShmReplayStore(planted, max_entries=8).add("orders/b", FOREVER)


def test_table_of_another_user_is_refused(path: Path, replay_log: pytest.LogCaptureFixture) -> None:
    """A file owned by another user is not used: add() fails closed and says why."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)
    assert not ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    assert "another user" in replay_log.text


def test_table_writable_by_others_is_refused(
    path: Path, replay_log: pytest.LogCaptureFixture
) -> None:
    """Whoever can write the table can erase ids: a group- or world-writable file is refused."""
    ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    path.chmod(0o620)
    assert not ShmReplayStore(path, max_entries=8).add("orders/b", FOREVER)
    assert "writable by its owner only" in replay_log.text


def test_unusable_path_fails_closed(tmp_path: Path) -> None:
    """When the file cannot be opened, add() refuses rather than accepts."""
    store = ShmReplayStore(tmp_path / "missing-dir" / "replay.table", max_entries=8)
    assert not store.add("orders/a", FOREVER)


@pytest.mark.parametrize(
    "damage",
    ["magic", "version", "geometry", "zero-key", "short", "long", "tiny"],
)
def test_a_damaged_table_fails_closed_with_an_error(
    path: Path, replay_log: pytest.LogCaptureFixture, damage: str
) -> None:
    """Every add() on a file that is not a valid table refuses, and the error names the file."""
    ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if damage == "magic":
            f.write(b"not-a-replay-tbl")
        elif damage == "version":
            f.seek(16)
            f.write(struct.pack("<I", 99))
        elif damage == "geometry":
            f.seek(24)
            f.write(struct.pack("<Q", 3))
        elif damage == "zero-key":
            f.seek(32)
            f.write(bytes(16))
        elif damage == "short":
            f.truncate(size - _BUCKET)  # mapping it whole would crash a worker (SIGBUS)
        elif damage == "long":
            f.truncate(size + 4096)
        else:
            f.truncate(20)
    store = ShmReplayStore(path, max_entries=8)
    assert [store.add(f"orders/secret-{i}", FOREVER) for i in range(3)] == [False] * 3
    errors = [r for r in replay_log.records if r.levelno == logging.ERROR]
    assert errors and str(path) in errors[0].getMessage()
    assert "secret" not in replay_log.text


def test_an_sqlite_database_is_refused_with_a_hint(
    path: Path, replay_log: pytest.LogCaptureFixture
) -> None:
    """MSCOMM_REPLAY_DB left pointing at an SQLite store: refused, and the log says what it is."""
    assert SqliteReplayStore(path).add("orders/a", FOREVER)
    assert not ShmReplayStore(path, max_entries=8).add("orders/b", FOREVER)
    assert "SQLite database" in replay_log.text


def test_a_table_whose_creator_died_is_created_again(path: Path) -> None:
    """A sized file without the committing magic (its creator was killed) is initialised anew."""
    path.write_bytes(bytes(_HEADER_SIZE + 5 * _BUCKET))  # sized, then killed
    path.chmod(0o600)
    store = ShmReplayStore(path, max_entries=8)
    assert store.add("orders/a", FOREVER)
    assert path.stat().st_size == _HEADER_SIZE + 2 * _BUCKET


@pytest.mark.parametrize(
    "content",
    [
        bytes(9_999) + b"\x01",  # zeros at first, not a table's size
        bytes(16) + b"\x02" + bytes(_HEADER_SIZE + 5 * _BUCKET - 17),  # data in the header
    ],
    ids=["odd-size", "header-not-blank"],
)
def test_another_file_starting_with_zeros_is_left_alone(
    path: Path, content: bytes, replay_log: pytest.LogCaptureFixture
) -> None:
    """A file MSCOMM_REPLAY_DB names by mistake is never truncated: only an empty file, or
    one of a table's size whose header is all zeros, is set up as a table."""
    path.write_bytes(content)
    path.chmod(0o600)
    assert not ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    assert path.read_bytes() == content
    assert "not a replay table" in replay_log.text


def test_the_store_recovers_once_a_bad_file_is_replaced(path: Path) -> None:
    """A bad file is retried on each add(): once removed, the same store works."""
    path.write_bytes(b"garbage" * 1000)
    path.chmod(0o600)
    store = ShmReplayStore(path, max_entries=8)
    assert not store.add("orders/a", FOREVER)
    path.unlink()
    assert store.add("orders/a", FOREVER)


def test_each_table_has_its_own_hashing_key(tmp_path: Path) -> None:
    """The hashing key is random per file, so peers cannot aim ids at chosen buckets."""
    keys = []
    for name in ("a.table", "b.table"):
        ShmReplayStore(tmp_path / name, max_entries=8).add("orders/a", FOREVER)
        with open(tmp_path / name, "rb") as f:
            keys.append(_HEADER.unpack(f.read(_HEADER.size))[4])
    assert keys[0] != keys[1]
    assert all(key != bytes(16) for key in keys)


def test_an_id_is_stored_as_its_keyed_digest(path: Path) -> None:
    """The table holds the keyed BLAKE2b digest of an id in one of its two buckets, never the id."""
    assert ShmReplayStore(path, max_entries=8).add("orders/a", FOREVER)
    digest, buckets = placement(path, "orders/a")
    data = path.read_bytes()
    assert any(digest in data[b : b + _DIGESTS] for b in buckets)
    assert b"orders/a" not in data


def test_repr_shows_no_secrets(path: Path) -> None:
    """repr names the file and bound, not the hashing key or any id."""
    store = ShmReplayStore(path, max_entries=8)
    store.add("orders/a", FOREVER)
    with open(path, "rb") as f:
        hash_key = _HEADER.unpack(f.read(_HEADER.size))[4]
    text = repr(store)
    assert str(path) in text
    assert hash_key.hex() not in text
    assert repr(hash_key) not in text
    assert "orders/a" not in text


def test_close_then_add_maps_the_table_again(path: Path) -> None:
    """close() unmaps the table; the next add() maps it again and sees what was recorded."""
    store = ShmReplayStore(path, max_entries=8)
    assert store.add("orders/a", FOREVER)
    store.close()
    store.close()
    assert not store.add("orders/a", FOREVER)


def test_importing_the_package_does_not_import_mmap() -> None:
    """`import mscomm_sync` stays light: mmap is imported only when a table is mapped."""
    code = "import sys, mscomm_sync, mscomm_sync.replay.shm; print('mmap' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_closed_table_is_never_locked_again(path: Path) -> None:
    """After close(), a thread still holding the old table cannot flock a reused descriptor."""
    store = ShmReplayStore(path, max_entries=8)
    assert store.add("orders/a", FOREVER)
    table = store._table
    assert table is not None
    store.close()
    with pytest.raises(ValueError):
        table.lock_file()
    with pytest.raises(ValueError):
        table.unlock_file()


def test_a_table_half_made_by_a_signal_is_finalised_quietly() -> None:
    """A table whose ``__init__`` was cut short (Ctrl-C) has no file yet; dropping it is silent."""
    table = replay_shm._Table.__new__(replay_shm._Table)
    table.pid = os.getpid()
    table.__del__()  # what the finaliser runs; it printed "Exception ignored" before
