"""BodyBuffer: exact bytes for any way they arrive, and memory in step with what arrived."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mscomm_sync.buffers import BodyBuffer

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
