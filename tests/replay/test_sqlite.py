"""Replay stores: atomic insert-if-absent with expiry, in memory and host-wide SQLite."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.replay import (
    REPLAY_DB_ENV,
    MemoryReplayStore,
    ReplayStore,
)
from mscomm_sync.replay.sqlite import SqliteReplayStore


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeStore = Callable[[FakeClock], ReplayStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    def make(clock: FakeClock) -> ReplayStore:
        if request.param == "memory":
            return MemoryReplayStore(clock=clock)
        return SqliteReplayStore(tmp_path / "replay.sqlite3", clock=clock)

    return make


def test_first_add_is_fresh_and_second_is_not(make_store: MakeStore) -> None:
    """A key is accepted once and refused while it has not expired."""
    clock = FakeClock()
    store = make_store(clock)
    assert store.add("orders/a", clock.now + 60)
    assert not store.add("orders/a", clock.now + 60)
    assert store.add("orders/b", clock.now + 60)


def test_expired_key_is_accepted_again(make_store: MakeStore) -> None:
    """Once its expiry passed, a key counts as absent."""
    clock = FakeClock()
    store = make_store(clock)
    assert store.add("orders/a", clock.now + 60)
    clock.now += 61
    assert store.add("orders/a", clock.now + 60)
    assert not store.add("orders/a", clock.now + 60)


def test_store_satisfies_protocol(make_store: MakeStore) -> None:
    """Every store is a ReplayStore."""
    assert isinstance(make_store(FakeClock()), ReplayStore)


def test_concurrent_threads_see_exactly_one_fresh(make_store: MakeStore) -> None:
    """Of 16 threads adding one key at once, exactly one sees True."""
    clock = FakeClock()
    store = make_store(clock)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: store.add("orders/x", clock.now + 60), range(64)))
    assert results.count(True) == 1


def _add_many(path: str, keys: list[str]) -> list[bool]:
    store = SqliteReplayStore(path)
    return [store.add(k, 4_000_000_000.0) for k in keys]


def test_processes_share_one_sqlite_store(tmp_path: Path) -> None:
    """Four processes adding the same keys: each key is fresh in exactly one of them."""
    keys = [f"orders/{i}" for i in range(50)]
    path = str(tmp_path / "replay.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_add_many, [(path, keys)] * 4, chunksize=1)
    for i in range(len(keys)):
        assert sum(r[i] for r in results) == 1


def _child_add(store: SqliteReplayStore, key: str, queue: multiprocessing.Queue[bool]) -> None:
    queue.put(store.add(key, 4_000_000_000.0))


def test_store_used_before_fork_works_in_child(tmp_path: Path) -> None:
    """A store whose connection was opened before fork() still works, shared, in the child."""
    store = SqliteReplayStore(tmp_path / "replay.sqlite3")
    assert store.add("orders/parent", 4_000_000_000.0)
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bool] = ctx.Queue()
    for key in ("orders/parent", "orders/child"):
        child = ctx.Process(target=_child_add, args=(store, key, queue))
        child.start()
        child.join(30)
        assert child.exitcode == 0
    assert [queue.get(timeout=10), queue.get(timeout=10)] == [False, True]
    assert not store.add("orders/child", 4_000_000_000.0)


def test_database_file_is_private(tmp_path: Path) -> None:
    """The database file is created readable and writable by its owner only."""
    path = tmp_path / "replay.sqlite3"
    SqliteReplayStore(path).add("orders/a", 4_000_000_000.0)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_unusable_database_fails_closed(tmp_path: Path) -> None:
    """When the database cannot be opened, add() refuses rather than accepts."""
    store = SqliteReplayStore(tmp_path / "missing-dir" / "replay.sqlite3")
    assert not store.add("orders/a", 4_000_000_000.0)


def test_expired_entries_are_purged(tmp_path: Path) -> None:
    """Expired ids are deleted from the database as inserts go on."""
    clock = FakeClock()
    store = SqliteReplayStore(tmp_path / "replay.sqlite3", clock=clock)
    for i in range(1024):
        store.add(f"orders/{i}", clock.now + 1)
    clock.now += 2
    for i in range(1024):
        store.add(f"orders/new-{i}", clock.now + 60)
    with sqlite3.connect(tmp_path / "replay.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 1024


def test_database_of_another_user_is_refused(tmp_path: Path) -> None:
    """A database file owned by another user is not used: add() fails closed."""
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    path = tmp_path / "replay.sqlite3"
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)
    assert not SqliteReplayStore(path).add("orders/a", 4_000_000_000.0)


def test_symlink_in_place_of_database_is_refused(tmp_path: Path) -> None:
    """A symlink planted under the database's name is not followed: add() fails closed."""
    target = tmp_path / "elsewhere.sqlite3"
    SqliteReplayStore(target).add("orders/a", 4_000_000_000.0)
    planted = tmp_path / "replay.sqlite3"
    planted.symlink_to(target)
    assert not SqliteReplayStore(planted).add("orders/b", 4_000_000_000.0)


def test_full_sqlite_store_refuses_new_ids(tmp_path: Path) -> None:
    """With max_entries unexpired ids recorded, a new id is refused (fails closed)."""
    clock = FakeClock()
    store = SqliteReplayStore(tmp_path / "replay.sqlite3", max_entries=4, clock=clock)
    assert all(store.add(f"orders/{i}", clock.now + 60) for i in range(4))
    assert not store.add("orders/new", clock.now + 60)
    clock.now += 30  # still unexpired, even after the once-a-second recount
    assert not store.add("orders/new", clock.now + 60)
    assert len(store) == 4


def test_full_sqlite_store_purges_expired_ids_to_make_room(tmp_path: Path) -> None:
    """When the bound is reached, expired ids are deleted and new ids fit again."""
    clock = FakeClock()
    path = tmp_path / "replay.sqlite3"
    store = SqliteReplayStore(path, max_entries=4, clock=clock)
    assert all(store.add(f"orders/{i}", clock.now + 10) for i in range(4))
    clock.now += 11
    assert store.add("orders/new", clock.now + 60)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM seen").fetchone()[0] == 1


def test_bound_holds_for_a_store_opened_on_a_full_database(tmp_path: Path) -> None:
    """A new process's store counts the shared database when it opens, so it refuses too."""
    clock = FakeClock()
    path = tmp_path / "replay.sqlite3"
    first = SqliteReplayStore(path, max_entries=4, clock=clock)
    assert all(first.add(f"orders/{i}", clock.now + 60) for i in range(4))
    assert not SqliteReplayStore(path, max_entries=4, clock=clock).add("orders/x", clock.now + 60)


def _fill(path: Path, count: int, *, start: int = 0) -> None:
    """Insert ``count`` unexpired ids straight into the store's table, in one transaction."""
    rows = [(f"filler/{i}", 4_000_000_000.0) for i in range(start, start + count)]
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO seen (key, expires_at) VALUES (?, ?)", rows)


def test_bound_holds_with_several_connections(tmp_path: Path) -> None:
    """Four connections filling one store pass its bound by an interval each at most."""
    clock = FakeClock()
    store = SqliteReplayStore(tmp_path / "replay.sqlite3", max_entries=256, clock=clock)
    barrier = threading.Barrier(4)

    def fill(thread: int) -> int:
        barrier.wait()
        return sum(store.add(f"orders/{thread}-{i}", clock.now + 60) for i in range(200))

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        accepted = sum(pool.map(fill, range(4)))
    assert 256 <= accepted <= 256 + 4 * (256 // 16)
    assert not store.add("orders/late", clock.now + 60)


def test_recount_interval_grows_with_the_table_but_not_past_the_room(tmp_path: Path) -> None:
    """A connection that counted 160,000 of 320,000 ids inserts 160,000 // 64 before counting again.

    Another process fills the table meanwhile: this connection notices only at its next
    count, so the ids it accepts in between are its interval, more than 1024 (counting is
    rare on a big table) and at most a sixty-fourth of the room it saw (the bound holds).
    """
    clock = FakeClock()
    path = tmp_path / "replay.sqlite3"
    store = SqliteReplayStore(path, max_entries=320_000, clock=clock)
    assert store.add("orders/first", clock.now + 60)  # creates the table
    store.close()
    _fill(path, 160_000 - 1)
    assert store.add("orders/opens", clock.now + 60)  # counts 160,000
    _fill(path, 160_000, start=160_000)
    accepted = 1
    while store.add(f"orders/{accepted}", clock.now + 60):
        accepted += 1
    assert 1024 < accepted <= 160_000 // 64


def test_purging_scans_the_table_rarely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling an empty store with 20,000 ids purges a handful of times, not every 1024 ids."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    clock = FakeClock()
    store = SqliteReplayStore(tmp_path / "replay.sqlite3", clock=clock)
    assert all(store.add(f"orders/{i}", clock.now + 60) for i in range(20_000))
    purges = [s for s in statements if s.startswith("DELETE")]
    # On opening, then after 1024, 2048, 4096, 8192 and 16384 ids.
    assert len(purges) == 6


def test_expired_ids_never_outnumber_the_rest_for_long(tmp_path: Path) -> None:
    """With ids living 10 s, the table holds about the live ids, not every id ever seen."""
    clock = FakeClock()
    path = tmp_path / "replay.sqlite3"
    store = SqliteReplayStore(path, clock=clock)
    for i in range(30_000):
        assert store.add(f"orders/{i}", clock.now + 10)
        clock.now += 0.005  # 200 ids a second: 2,000 live at any time
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM seen").fetchone()[0]
    assert rows <= 2 * 2_000 + 1024


def test_close_in_a_forked_child_leaves_the_parents_connection(tmp_path: Path) -> None:
    """close() on a connection inherited across fork() abandons it; both processes go on."""
    store = SqliteReplayStore(tmp_path / "replay.sqlite3")
    assert store.add("orders/parent", 4_000_000_000.0)
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bool] = ctx.Queue()
    child = ctx.Process(target=_child_close_then_add, args=(store, "orders/child", queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=10)
    assert not store.add("orders/child", 4_000_000_000.0)
    assert store.add("orders/parent-again", 4_000_000_000.0)


def _child_close_then_add(
    store: SqliteReplayStore, key: str, queue: multiprocessing.Queue[bool]
) -> None:
    store.close()
    queue.put(store.add(key, 4_000_000_000.0))


def test_sqlite_store_rejects_a_bound_below_one(tmp_path: Path) -> None:
    """max_entries=0 would refuse everything; it is a configuration error."""
    with pytest.raises(ValueError, match="max_entries"):
        SqliteReplayStore(tmp_path / "replay.sqlite3", max_entries=0)


def test_sqlite_store_names_the_variable_for_an_empty_path() -> None:
    """An empty path is refused as the shared-memory store refuses it, naming the variable."""
    with pytest.raises(ConfigurationError) as raised:
        SqliteReplayStore("")
    assert raised.value.variable == REPLAY_DB_ENV
    assert raised.value.reason == "empty path"


def test_importing_the_package_does_not_import_sqlite3() -> None:
    """`import mscomm_sync` stays light: sqlite3 is imported only when a store is built."""
    code = "import sys, mscomm_sync, mscomm_sync.replay; print('sqlite3' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_not_before_is_when_the_database_was_made(tmp_path: Path) -> None:
    """A new database vouches from the first whole second after it was made; every later
    opener reads that from the file, not its own time."""
    made = SqliteReplayStore(tmp_path / "replay.sqlite3", clock=lambda: 1_700_000_000.7)
    assert made.not_before == 1_700_000_001.0
    later = SqliteReplayStore(tmp_path / "replay.sqlite3", clock=lambda: 1_800_000_000.0)
    assert later.not_before == 1_700_000_001.0
