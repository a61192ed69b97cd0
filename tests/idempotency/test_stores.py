"""The idempotency stores: one claimant per key, answers kept and bounded, failures typed.

Both stores are held to one contract (``store`` is parametrized); the
SQLite store, shared by every process of a host, is also raced by real
forked processes and given up by a process that dies holding a claim.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import pytest

from mscomm_sync.errors import ConfigurationError, IdempotencyStoreError
from mscomm_sync.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    Outcome,
    SqliteIdempotencyStore,
    StoredAnswer,
    default_idempotency_path,
)
from mscomm_sync.idempotency.store import fingerprint, scope_of

FORK = multiprocessing.get_context("fork")
ANSWER = StoredAnswer("201 Created", (("X-Order", "17"),), b'{"id": 17}', "application/json")
Store = Union[MemoryIdempotencyStore, SqliteIdempotencyStore]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryIdempotencyStore(max_entries=8, clock=clock)
        return
    made = SqliteIdempotencyStore(tmp_path / "idem.sqlite3", max_entries=8, clock=clock)
    yield made
    made.close()


def test_both_stores_are_idempotency_stores(store: Store) -> None:
    assert isinstance(store, IdempotencyStore)


def test_the_first_claim_starts_and_a_repeat_finds_it_running(store: Store) -> None:
    first = store.claim("s", "fp", lease=60)
    assert first.outcome is Outcome.STARTED and first.token
    again = store.claim("s", "fp", lease=60)
    assert again.outcome is Outcome.RUNNING
    assert 0 < again.retry_after <= 1.0


def test_a_completed_claim_gives_its_answer_to_every_repeat(store: Store) -> None:
    claim = store.claim("s", "fp", lease=60)
    store.complete("s", claim.token, ANSWER, retention=3600)
    for _ in range(3):
        repeat = store.claim("s", "fp", lease=60)
        assert (repeat.outcome, repeat.answer) == (Outcome.DONE, ANSWER)


def test_an_answer_not_kept_is_done_without_an_answer(store: Store) -> None:
    claim = store.claim("s", "fp", lease=60)
    store.complete("s", claim.token, None, retention=3600)
    repeat = store.claim("s", "fp", lease=60)
    assert (repeat.outcome, repeat.answer) == (Outcome.DONE, None)


def test_another_fingerprint_is_a_reused_key_running_or_done(store: Store) -> None:
    claim = store.claim("s", "fp", lease=60)
    assert store.claim("s", "other", lease=60).outcome is Outcome.REUSED
    store.complete("s", claim.token, ANSWER, retention=3600)
    assert store.claim("s", "other", lease=60).outcome is Outcome.REUSED


def test_a_released_claim_may_start_again(store: Store) -> None:
    claim = store.claim("s", "fp", lease=60)
    store.release("s", claim.token)
    assert store.claim("s", "fp", lease=60).outcome is Outcome.STARTED


def test_an_answer_is_forgotten_when_its_retention_ends(store: Store, clock: Clock) -> None:
    claim = store.claim("s", "fp", lease=60)
    store.complete("s", claim.token, ANSWER, retention=100)
    clock.now += 99
    assert store.claim("s", "fp", lease=60).outcome is Outcome.DONE
    clock.now += 1
    assert store.claim("s", "fp", lease=60).outcome is Outcome.STARTED


def test_a_lease_that_runs_out_gives_the_key_up_and_the_old_claim_loses(
    store: Store, clock: Clock
) -> None:
    """A hung claimant's key is taken over after its lease; its late answer is not kept."""
    old = store.claim("s", "fp", lease=10)
    clock.now += 10
    new = store.claim("s", "fp", lease=10)
    assert new.outcome is Outcome.STARTED and new.token != old.token
    store.complete("s", old.token, ANSWER, retention=3600)  # too late: ignored
    assert store.claim("s", "fp", lease=10).outcome is Outcome.RUNNING
    store.release("s", old.token)  # not its claim any more: ignored
    assert store.claim("s", "fp", lease=10).outcome is Outcome.RUNNING


def test_a_full_store_forgets_the_oldest_answers_first(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """At max_entries (8) a new key forgets the oldest answered one, with a WARNING."""
    for i in range(8):
        claim = store.claim(f"k{i}", "fp", lease=60)
        store.complete(f"k{i}", claim.token, ANSWER, retention=3600)
    assert store.claim("new", "fp", lease=60).outcome is Outcome.STARTED
    assert store.claim("k0", "fp", lease=60).outcome is Outcome.STARTED  # forgotten
    assert store.claim("k7", "fp", lease=60).outcome is Outcome.DONE
    assert any(r.levelname == "WARNING" and "full" in r.getMessage() for r in caplog.records)


def test_a_store_full_of_running_claims_refuses(store: Store) -> None:
    for i in range(8):
        assert store.claim(f"k{i}", "fp", lease=60).outcome is Outcome.STARTED
    with pytest.raises(IdempotencyStoreError) as info:
        store.claim("one-more", "fp", lease=60)
    assert info.value.reason == "full"


def test_threads_racing_for_one_key_start_it_once(store: Store) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[Outcome] = []

    def race() -> None:
        barrier.wait(10)
        outcomes.append(store.claim("s", "fp", lease=60).outcome)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.value for o in outcomes) == ["running"] * 7 + ["started"]


def test_stored_answers_round_trip_their_bytes() -> None:
    binary = StoredAnswer("200 OK", (("A", "1"), ("A", "2")), bytes(range(256)) + b"\n\n", None)
    assert StoredAnswer.decode(binary.encode()) == binary
    with pytest.raises(ValueError):
        StoredAnswer.decode(b"not json\nbody")


def test_scopes_and_fingerprints_separate_what_must_differ() -> None:
    """The scope is per service, caller and key; the fingerprint per method, target, body."""
    scopes = {
        scope_of("billing", "orders", "k"),
        scope_of("billing", "shipping", "k"),
        scope_of("ledger", "orders", "k"),
        scope_of("billing", "orders", "k2"),
        scope_of("billing", "orders\0k", ""),
    }
    assert len(scopes) == 5
    prints = {
        fingerprint("POST", "/a", b"1"),
        fingerprint("PUT", "/a", b"1"),
        fingerprint("POST", "/b", b"1"),
        fingerprint("POST", "/a", b"2"),
    }
    assert len(prints) == 4
    assert "k" not in scope_of("billing", "orders", "k")  # a digest: no key in the store


# -- the SQLite store: host-wide -------------------------------------------------


def test_the_database_is_private_to_its_user(tmp_path: Path) -> None:
    path = tmp_path / "idem.sqlite3"
    store = SqliteIdempotencyStore(path)
    store.claim("s", "fp", lease=60)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.close()


def test_an_answer_survives_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    """Kept answers are on disk: a restarted service (a new store) still has them."""
    path = tmp_path / "idem.sqlite3"
    first = SqliteIdempotencyStore(path)
    claim = first.claim("s", "fp", lease=60)
    first.complete("s", claim.token, ANSWER, retention=3600)
    first.close()
    assert SqliteIdempotencyStore(path).claim("s", "fp", lease=60).answer == ANSWER


@pytest.mark.parametrize(("durable", "level"), [(False, 1), (True, 2)])
def test_a_durable_store_flushes_every_commit(tmp_path: Path, durable: bool, level: int) -> None:
    """``durable=True`` commits with ``synchronous=FULL`` (2), which survives a power loss;
    the default with ``NORMAL`` (1), which survives a crash of the service only."""
    store = SqliteIdempotencyStore(tmp_path / "idem.db", durable=durable)
    claim = store.claim("s", "f", lease=5)
    store.complete("s", claim.token, StoredAnswer("200 OK", (), b"x", None), retention=60)
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == level
    assert store.durable is durable
    store.close()


def test_an_answer_larger_than_max_bytes_is_not_kept(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idem.sqlite3", max_bytes=100)
    claim = store.claim("s", "fp", lease=60)
    store.complete("s", claim.token, StoredAnswer("200 OK", (), b"x" * 200, None), retention=60)
    repeat = store.claim("s", "fp", lease=60)
    assert (repeat.outcome, repeat.answer) == (Outcome.DONE, None)


def test_max_bytes_forgets_old_answers_to_keep_new_ones(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idem.sqlite3", max_bytes=1000)
    big = StoredAnswer("200 OK", (), b"x" * 400, None)
    for name in ("a", "b", "c"):
        claim = store.claim(name, "fp", lease=60)
        store.complete(name, claim.token, big, retention=60)
    assert store.claim("a", "fp", lease=60).outcome is Outcome.STARTED  # forgotten for c
    assert store.claim("c", "fp", lease=60).answer == big


def test_a_broken_database_is_a_store_error_naming_no_key(tmp_path: Path) -> None:
    path = tmp_path / "idem.sqlite3"
    path.write_bytes(b"this is not an SQLite database" * 100)
    store = SqliteIdempotencyStore(path)
    with pytest.raises(IdempotencyStoreError) as info:
        store.claim(scope_of("billing", "orders", "charge-1001"), "fp", lease=60)
    assert "charge-1001" not in str(info.value)
    assert info.value.reason == "DatabaseError"


@pytest.mark.parametrize(("option", "value"), [("max_entries", 0), ("max_bytes", 0)])
def test_bounds_below_one_are_configuration_errors(tmp_path: Path, option: str, value: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        SqliteIdempotencyStore(tmp_path / "x", **{option: value})
    assert info.value.variable == option


def test_the_default_path_is_on_disk_and_per_user(tmp_path: Path) -> None:
    assert default_idempotency_path({"MSCOMM_IDEMPOTENCY_DB": "/srv/i.db"}) == Path("/srv/i.db")
    assert default_idempotency_path({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "mscomm" / "idempotency.sqlite3"
    )


def _race(path: str, barrier: Any, results: Any) -> None:
    store = SqliteIdempotencyStore(path)
    barrier.wait(30)
    results.put([store.claim(f"k{i}", "fp", lease=60).outcome.value for i in range(50)])


@pytest.mark.reliability
def test_forked_processes_racing_for_keys_start_each_once(tmp_path: Path) -> None:
    """Four processes claiming the same 50 keys at once: each key starts in exactly one."""
    path = str(tmp_path / "idem.sqlite3")
    SqliteIdempotencyStore(path, max_entries=1000).close()  # make the schema first
    barrier = FORK.Barrier(4)
    results: Any = FORK.Queue()
    children = [FORK.Process(target=_race, args=(path, barrier, results)) for _ in range(4)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    for i in range(50):
        assert sorted(o[i] for o in outcomes) == ["running"] * 3 + ["started"]


def _claim_and_die(path: str) -> None:
    SqliteIdempotencyStore(path).claim("s", "fp", lease=3600)
    os._exit(0)  # killed mid-handler: never completes, never releases


@pytest.mark.reliability
def test_a_dead_processs_claim_is_given_up_at_once(tmp_path: Path) -> None:
    """A worker that died holding a claim (its lease an hour) does not block the key."""
    path = str(tmp_path / "idem.sqlite3")
    child = FORK.Process(target=_claim_and_die, args=(path,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert SqliteIdempotencyStore(path).claim("s", "fp", lease=60).outcome is Outcome.STARTED


def test_a_live_processs_claim_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "idem.sqlite3")
    ready, done = FORK.Event(), FORK.Event()

    def hold() -> None:
        SqliteIdempotencyStore(path).claim("s", "fp", lease=3600)
        ready.set()
        done.wait(30)

    child = FORK.Process(target=hold)
    child.start()
    try:
        assert ready.wait(30)
        assert SqliteIdempotencyStore(path).claim("s", "fp", lease=60).outcome is Outcome.RUNNING
    finally:
        done.set()
        child.join(30)


# -- the Redis store: shared by hosts ---------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from support.redis_server import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.db(0)


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[Any]:
    from mscomm_sync.idempotency import RedisIdempotencyStore

    made = RedisIdempotencyStore.from_url(redis_url, prefix=f"test:{os.urandom(4).hex()}")
    yield made
    made.client.close()


def test_redis_follows_the_contract(redis_store: Any) -> None:
    """Start, running, done with the answer, reused, released: as the other stores."""
    claim = redis_store.claim("s", "fp", lease=60)
    assert claim.outcome is Outcome.STARTED
    running = redis_store.claim("s", "fp", lease=60)
    assert running.outcome is Outcome.RUNNING and 0 < running.retry_after <= 1
    assert redis_store.claim("s", "other", lease=60).outcome is Outcome.REUSED
    redis_store.release("s", "not-the-token")  # ignored
    redis_store.complete("s", claim.token, ANSWER, retention=3600)
    assert redis_store.claim("s", "fp", lease=60).answer == ANSWER
    assert redis_store.claim("s", "other", lease=60).outcome is Outcome.REUSED
    second = redis_store.claim("t", "fp", lease=60)
    redis_store.complete("t", second.token, None, retention=3600)
    assert redis_store.claim("t", "fp", lease=60) == redis_store.claim("t", "fp", lease=60)
    assert redis_store.claim("t", "fp", lease=60).answer is None
    third = redis_store.claim("u", "fp", lease=60)
    redis_store.release("u", third.token)
    assert redis_store.claim("u", "fp", lease=60).outcome is Outcome.STARTED


def test_redis_gives_up_a_claim_when_its_lease_ends(redis_store: Any) -> None:
    """Redis expires the claim itself: the next claim after the lease starts, and the
    first claimant's late answer is not kept."""
    old = redis_store.claim("s", "fp", lease=0.2)
    for _ in range(100):  # bounded: at most 10 s
        if redis_store.claim("s", "fp", lease=60).outcome is Outcome.STARTED:
            break
        threading.Event().wait(0.1)
    else:
        pytest.fail("the lease never ended")
    redis_store.complete("s", old.token, ANSWER, retention=3600)
    assert redis_store.claim("s", "fp", lease=60).outcome is Outcome.RUNNING


def test_processes_racing_on_redis_start_each_key_once(redis_url: str) -> None:
    prefix = f"race:{os.urandom(4).hex()}"
    barrier = FORK.Barrier(4)
    results: Any = FORK.Queue()

    def race() -> None:
        from mscomm_sync.idempotency import RedisIdempotencyStore

        store = RedisIdempotencyStore.from_url(redis_url, prefix=prefix)
        barrier.wait(30)
        results.put([store.claim(f"k{i}", "fp", lease=60).outcome.value for i in range(50)])

    children = [FORK.Process(target=race) for _ in range(4)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
    for i in range(50):
        assert sorted(o[i] for o in outcomes) == ["running"] * 3 + ["started"]


def test_an_unreachable_redis_is_a_store_error(tmp_path: Path) -> None:
    from mscomm_sync.idempotency import RedisIdempotencyStore

    port = 1  # nothing listens on port 1 of the loopback
    store = RedisIdempotencyStore.from_url(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(IdempotencyStoreError) as info:
        store.claim("s", "fp", lease=60)
    assert info.value.reason == "ConnectionError"
