"""Tests for mscomm_sync.replay.MemoryReplayStore and the pluggable store contract."""

from __future__ import annotations

import base64
import threading

import pytest

from mscomm_sync.envelope import Envelope
from mscomm_sync.errors import IntegrityError
from mscomm_sync.keyring import Keyring
from mscomm_sync.replay import MemoryReplayStore, ReplayStore

T0 = 1_700_000_000.0


class FakeClock:
    """A wall clock that only moves when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_first_add_is_fresh_second_is_a_replay() -> None:
    """add() returns True for a new id and False for the same id again."""
    store = MemoryReplayStore(clock=FakeClock())
    assert store.add("alpha/1", T0 + 60) is True
    assert store.add("alpha/1", T0 + 60) is False
    assert store.add("alpha/2", T0 + 60) is True


def test_id_stays_recorded_until_it_expires() -> None:
    """An id is refused right up to its expiry time."""
    clock = FakeClock()
    store = MemoryReplayStore(clock=clock)
    store.add("m", T0 + 60)
    clock.now = T0 + 59.9
    assert store.add("m", T0 + 120) is False


def test_expired_entries_are_evicted() -> None:
    """Once expired, entries leave the store and their ids may be added again."""
    clock = FakeClock()
    store = MemoryReplayStore(clock=clock)
    for i in range(10):
        store.add(f"m{i}", T0 + 10)
    store.add("late", T0 + 100)
    assert len(store) == 11
    clock.now = T0 + 10
    assert len(store) == 1
    assert store.add("m0", T0 + 20) is True


def test_readded_id_keeps_its_new_expiry() -> None:
    """An id added again after it expired is remembered until its new expiry, not its old one."""
    clock = FakeClock()
    store = MemoryReplayStore(clock=clock)
    assert store.add("m", T0 + 10)
    clock.now = T0 + 11
    assert store.add("m", T0 + 100)
    clock.now = T0 + 50
    assert store.add("m", T0 + 100) is False
    assert len(store) == 1
    clock.now = T0 + 100
    assert store.add("m", T0 + 200) is True


def test_store_is_bounded_and_fails_closed_when_full() -> None:
    """A full store refuses new ids instead of forgetting unexpired ones."""
    clock = FakeClock()
    store = MemoryReplayStore(max_entries=3, clock=clock)
    assert all(store.add(f"m{i}", T0 + 60) for i in range(3))
    assert store.add("m3", T0 + 60) is False
    assert len(store) == 3
    assert store.add("m0", T0 + 60) is False  # the old ids are still remembered


def test_full_store_accepts_again_after_expiry() -> None:
    """Eviction of expired ids frees room in a full store."""
    clock = FakeClock()
    store = MemoryReplayStore(max_entries=2, clock=clock)
    store.add("a", T0 + 5)
    store.add("b", T0 + 50)
    assert store.add("c", T0 + 50) is False
    clock.now = T0 + 6
    assert store.add("c", T0 + 50) is True


def test_full_store_makes_the_envelope_fail_closed() -> None:
    """When the replay store is full, fresh genuine requests are rejected, not let through."""
    clock = FakeClock()
    ring = Keyring.from_mapping({"alpha": base64.urlsafe_b64encode(bytes(range(32))).decode()})
    sender = Envelope("alpha", keyring=ring, clock=clock)
    receiver = Envelope(
        "alpha",
        keyring=ring,
        clock=clock,
        replay_store=MemoryReplayStore(max_entries=1, clock=clock),
    )
    first, second = (
        sender.seal_request(recipient="alpha", method="GET", target="/") for _ in range(2)
    )
    receiver.open_request(method="GET", target="/", headers=first.headers, body=first.body)
    with pytest.raises(IntegrityError):
        receiver.open_request(method="GET", target="/", headers=second.headers, body=second.body)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_entries_must_be_positive(bad: int) -> None:
    """A store that could hold nothing is refused at construction."""
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=bad)


def test_concurrent_adds_of_one_id_succeed_exactly_once() -> None:
    """Of 32 threads adding the same id at once, exactly one sees True."""
    store = MemoryReplayStore(clock=FakeClock())
    count = 32
    barrier = threading.Barrier(count)
    results: list[bool] = []
    lock = threading.Lock()

    def add() -> None:
        barrier.wait()
        outcome = store.add("dup", T0 + 60)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=add) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * (count - 1) + [True]


def test_memory_store_satisfies_the_protocol() -> None:
    """MemoryReplayStore is a ReplayStore."""
    assert isinstance(MemoryReplayStore(), ReplayStore)


def test_repr_is_short_and_holds_no_ids() -> None:
    """The repr shows counts, not stored ids."""
    store = MemoryReplayStore(max_entries=5, clock=FakeClock())
    store.add("secret-looking-id", T0 + 60)
    assert "secret-looking-id" not in repr(store)
    assert "1" in repr(store)


class RecordingStore:
    """A custom store that records every call and answers as told."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[str, float]] = []

    def add(self, key: str, expires_at: float) -> bool:
        self.calls.append((key, expires_at))
        return self.answer


def _pair(store: RecordingStore) -> tuple[Envelope, Envelope]:
    ring = Keyring.from_mapping({"alpha": bytes(range(32)), "billing": bytes(range(32, 64))})
    clock = FakeClock()
    return (
        Envelope("alpha", keyring=ring, clock=clock),
        Envelope("billing", keyring=ring, clock=clock, replay_store=store),  # type: ignore[arg-type]
    )


def test_envelope_uses_a_plugged_in_store() -> None:
    """The envelope records opened request ids, with an expiry past the window, in its store."""
    store = RecordingStore(answer=True)
    sender, receiver = _pair(store)
    sealed = sender.seal_request(recipient="billing", method="GET", target="/")
    receiver.open_request(method="GET", target="/", headers=sealed.headers, body=sealed.body)
    assert len(store.calls) == 1
    key, expires_at = store.calls[0]
    assert sealed.message_id in key
    assert expires_at > T0 + receiver.window


def test_plugged_in_store_saying_seen_rejects() -> None:
    """A store answering False makes the envelope reject the request."""
    sender, receiver = _pair(RecordingStore(answer=False))
    sealed = sender.seal_request(recipient="billing", method="GET", target="/")
    with pytest.raises(IntegrityError):
        receiver.open_request(method="GET", target="/", headers=sealed.headers, body=sealed.body)


def test_store_is_not_consulted_for_a_forgery() -> None:
    """A message that fails verification is never recorded in the store."""
    store = RecordingStore(answer=True)
    sender, receiver = _pair(store)
    sealed = sender.seal_request(recipient="billing", method="GET", target="/")
    with pytest.raises(IntegrityError):
        receiver.open_request(
            method="GET", target="/", headers=sealed.headers, body=bytes(len(sealed.body))
        )
    assert store.calls == []


def test_not_before_is_the_second_the_store_was_made() -> None:
    """A memory store (one process) vouches from the second it was made in (the host-wide
    stores from the next: see test_shm and test_sqlite)."""
    assert MemoryReplayStore(clock=lambda: 1_700_000_000.9).not_before == 1_700_000_000.0
