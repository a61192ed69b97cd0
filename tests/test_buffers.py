"""BodyBuffer and BufferPool.

A body buffer gives exact bytes for any way they arrive, and holds memory in step
with what arrived; kept buffers are handed to one taker at a time, stay within
their bounds, and never let a body read past its own length."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mscomm_sync.buffers import BodyBuffer, BufferPool

FIRST = 2 * 1024 * 1024 + 16


@settings(max_examples=100, deadline=None, database=None)
@given(
    length=st.integers(min_value=1, max_value=9 * 1024 * 1024),
    first=st.integers(min_value=0, max_value=3_000_000),
    steps=st.lists(st.integers(min_value=4096, max_value=4_000_000), min_size=1, max_size=40),
)
def test_any_arrival_gives_the_exact_body(length: int, first: int, steps: list[int]) -> None:
    """Whatever the pieces, the body is the bytes sent, and never more than 4x what came."""
    data = bytes(range(256)) * (length // 256 + 1)
    data = data[:length]
    extra = b"next request"
    head = (data + extra)[:first]
    buffer = BodyBuffer(length, head)
    assert buffer.got == min(first, length)
    sent = buffer.got
    turn = 0
    while buffer.missing:
        with buffer.space() as space:
            count = min(steps[turn % len(steps)], len(space))
            space[:count] = data[sent : sent + count]
        buffer.filled(count)
        sent += count
        turn += 1
        assert len(buffer.body) <= min(length, max(FIRST, 4 * (buffer.got - count)))
    assert bytes(buffer.body) == data


def test_declared_length_alone_allocates_little() -> None:
    """A length of 1 GiB with no bytes yet holds only the first 2 MiB (and a tag's 16 bytes)."""
    buffer = BodyBuffer(1 << 30)
    with buffer.space() as space:
        assert len(space) == FIRST
    assert len(buffer.body) == FIRST
    assert repr(buffer) == f"<BodyBuffer 0/{1 << 30} bytes>"


def test_take_gives_the_smallest_buffer_that_fits() -> None:
    pool = BufferPool(keep=3)
    small, middle, large = bytearray(10), bytearray(100), bytearray(1000)
    for buffer in (large, small, middle):
        pool.give(buffer)
    assert pool.take(50) is middle
    assert pool.take(50) is large
    assert pool.take(50) is None
    assert pool.take(10) is small
    assert len(pool) == 0


def test_equal_contents_are_still_two_buffers() -> None:
    """Buffers compare by content; the pool must tell them apart by identity."""
    pool = BufferPool(keep=2)
    first, second = bytearray(64), bytearray(64)
    pool.give(first)
    pool.give(second)
    pool.give(first)  # offered twice: kept once
    assert len(pool) == 2
    taken = {id(pool.take(64)), id(pool.take(64))}
    assert taken == {id(first), id(second)}
    assert pool.take(1) is None


def test_bounds_drop_the_oversized_and_the_smallest() -> None:
    pool = BufferPool(keep=2, largest=1000)
    pool.give(bytearray(1001))
    assert len(pool) == 0
    pool.give(bytearray(10))
    pool.give(bytearray(500))
    pool.give(bytearray(200))  # full: the 10-byte one goes
    assert sorted(len(pool.take(1) or b"") for _ in range(2)) == [200, 500]
    assert pool.take(1) is None


def test_a_view_is_released_and_its_buffer_kept() -> None:
    pool = BufferPool()
    buffer = bytearray(100)
    view = memoryview(buffer)[:40]
    pool.give(view)
    with pytest.raises(ValueError):
        len(view)  # released: the giver cannot read what the next taker writes
    assert pool.take(100) is buffer
    pool.give(memoryview(b"read-only bytes"))  # not a bytearray: not kept
    assert len(pool) == 0


def test_clear_and_repr_show_no_contents() -> None:
    pool = BufferPool()
    pool.give(bytearray(b"ciphertext-bytes"))
    assert "ciphertext" not in repr(pool) and "1/2 kept" in repr(pool)
    pool.clear()
    assert len(pool) == 0 and pool.take(1) is None


def test_threads_never_share_a_buffer() -> None:
    """Many threads taking and giving: no buffer is ever held by two at once."""
    pool = BufferPool(keep=3)
    for size in (100, 200, 300):
        pool.give(bytearray(size))
    held: set[int] = set()
    lock = threading.Lock()
    clashes: list[int] = []

    def work(seed: int) -> None:
        for turn in range(300):
            buffer = pool.take(50 + (seed * 7 + turn) % 250)
            if buffer is None:
                continue
            with lock:
                if id(buffer) in held:
                    clashes.append(id(buffer))
                held.add(id(buffer))
            buffer[0] = seed  # touch it while held
            with lock:
                held.discard(id(buffer))
            pool.give(buffer)

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(work, range(8), timeout=60))
    assert clashes == []
    assert len(pool) == 3


def test_reused_buffer_never_takes_more_than_the_body() -> None:
    """A kept buffer longer than the body: reads stop at the body's length."""
    old = bytearray(b"x" * 100)
    buffer = BodyBuffer(10, b"abc", reuse=old)
    assert buffer.body is old
    with buffer.space() as space:
        assert len(space) == 7  # not the 97 bytes the buffer has room for
        space[:] = b"defghij"
    buffer.filled(7)
    assert buffer.missing == 0
    assert bytes(buffer.view()) == b"abcdefghij"


def test_a_buffer_too_small_to_reuse_is_ignored() -> None:
    old = bytearray(5)
    buffer = BodyBuffer(10, reuse=old)
    assert buffer.body is not old and len(buffer.body) == 10
    assert bytes(buffer.view()) == bytes(10)


def test_reuse_is_not_grown_past_the_declared_length() -> None:
    """A declared length larger than anything kept still starts at the first 2 MiB."""
    buffer = BodyBuffer(1 << 30, reuse=bytearray(1024))
    assert len(buffer.body) == FIRST
